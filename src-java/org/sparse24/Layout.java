package org.sparse24;

import org.sparse24.binding.global.sparse24;

/**
 * How a 2:4-sparse matrix is stored (see {@code sparse24.h}). Packed layouts keep the two kept values of each
 * group of 4 columns as a row-major {@code [rows, cols/2]} array followed by 4-bit metadata per group.
 */
public enum Layout {
    /** Not packed: the pruned dense {@code [rows, cols]} matrix. */
    DENSE(sparse24.S24_LAYOUT_DENSE),
    /** Values then row-major metadata; any rows, {@code cols % 4 == 0}. */
    ROW(sparse24.S24_LAYOUT_ROW),
    /** Values then metadata in cuSPARSELt's order; 16-bit dtypes, rows and cols multiples of 64. */
    CUSPARSELT(sparse24.S24_LAYOUT_CUSPARSELT);

    final int code;

    Layout(int code) {
        this.code = code;
    }
}
