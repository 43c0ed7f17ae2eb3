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

    /** CUSPARSELT's rows and cols are multiples of this (whole 64x32 metadata blocks). */
    public static final int CUSPARSELT_MULTIPLE = 64;

    final int code;

    Layout(int code) {
        this.code = code;
    }

    /**
     * Whether this layout holds a 2:4 matrix of {@code dtype} and shape {@code [rows, cols]} (groups of 4 along
     * cols): every layout needs {@code rows, cols >= 1} and {@code cols % 4 == 0}; CUSPARSELT also a 16-bit dtype
     * and rows and cols multiples of {@value #CUSPARSELT_MULTIPLE}.
     */
    public boolean holds(DType dtype, long rows, long cols) {
        if (rows < 1 || cols < 1 || cols % 4 != 0) {
            return false;
        }
        return this != CUSPARSELT
                || (dtype != DType.FP32 && rows % CUSPARSELT_MULTIPLE == 0 && cols % CUSPARSELT_MULTIPLE == 0);
    }

    /** Columns of {@code sparsify24ColsSplit}'s output {@code [features, tokens]} in this layout: ROW pads to 4. */
    long splitOutCols(long tokens) {
        return this == ROW ? (tokens + 3) / 4 * 4 : tokens;
    }
}
