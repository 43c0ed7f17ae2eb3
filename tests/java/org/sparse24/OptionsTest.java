package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Options: the native defaults as documented in sparse24.h, the builder, the dense preset. */
class OptionsTest {
    @Test
    void defaultsAreTheDocumentedOnes() {
        SparseFfnOptions o = SparseFfnOptions.defaults();
        assertTrue(o.sparseForward());
        assertTrue(o.sparseBackward());
        assertEquals(0.05, o.denseFraction());
        assertTrue(o.permuteTokens());
        assertEquals(0x5eed24, o.seed());
        assertTrue(o.algorithmSearch());
    }

    @Test
    void denseTurnsOffEverySparsity() {
        SparseFfnOptions o = SparseFfnOptions.dense();
        assertFalse(o.sparseForward());
        assertFalse(o.sparseBackward());
    }

    @Test
    void builderSetsEveryOptionAndToBuilderKeepsThem() {
        SparseFfnOptions o = SparseFfnOptions.builder().sparseBackward(false).denseFraction(0.25).permuteTokens(false)
                .seed(-7).algorithmSearch(true).build();
        assertEquals(new SparseFfnOptions(true, false, 0.25, false, -7, true, 0), o);
        assertEquals(o, o.toBuilder().build());
        assertEquals(0.5, o.toBuilder().denseFraction(0.5).build().denseFraction());
    }
}
