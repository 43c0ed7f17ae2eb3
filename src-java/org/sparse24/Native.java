package org.sparse24;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Loader;
import org.sparse24.binding.global.sparse24;

/** Loads the native library and turns native statuses into exceptions. */
final class Native {
    static {
        Loader.load(sparse24.class);
    }

    private Native() {
    }

    /** Throws a {@link Sparse24Exception} for a failed status; {@code call} names the native function. */
    static void check(int status, String call) {
        if (status != sparse24.S24_OK) {
            String error = string(sparse24.s24_last_error());
            String message = error.isEmpty() ? call + " failed" : error;
            throw new Sparse24Exception(status, string(sparse24.s24_status_name(status)), message);
        }
    }

    static String string(BytePointer p) {
        return p == null || p.isNull() ? "" : p.getString();
    }
}
