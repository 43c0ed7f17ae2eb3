package org.sparse24.presets;

import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;
import org.bytedeco.javacpp.tools.Info;
import org.bytedeco.javacpp.tools.InfoMap;
import org.bytedeco.javacpp.tools.InfoMapper;

/**
 * JavaCPP preset of the sparse24 C API ({@code src-native/include/sparse24.h}).
 *
 * <p>The parser turns the header into the raw bindings of {@code org.sparse24.binding} (generated under
 * {@code target/generated-sources/javacpp}, never committed): the opaque handles ({@code s24_context},
 * {@code s24_ffn}, {@code s24_saved}, {@code s24_event}) become {@code Pointer} subclasses, the plain structs
 * ({@code s24_context_info}, {@code s24_ffn_options}, {@code s24_ffn_info}, {@code s24_sparsity}) classes with
 * field accessors, the enums {@code int} constants of the global class
 * {@code org.sparse24.binding.global.sparse24}. The raw bindings are internal: the public API is
 * {@code org.sparse24}. Only {@code linux-x86_64} is built.
 */
@Properties(
        target = "org.sparse24.binding",
        global = "org.sparse24.binding.global.sparse24",
        value = @Platform(value = "linux-x86_64", include = "sparse24.h", link = "sparse24"))
public class sparse24 implements InfoMapper {
    @Override
    public void map(InfoMap infoMap) {
        // Include guard and export macros carry no API.
        infoMap.put(new Info("SPARSE24_H").cppTypes().annotations());
    }
}
