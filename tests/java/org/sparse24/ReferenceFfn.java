package org.sparse24;

/**
 * An independent float64 model of the sparse FFN (test oracle). It rounds to the dtype exactly where the
 * library stores a tensor (H, Yhat, Z, dYhat, dH, dX, dW1, dW2) and applies the 2:4 rules literally:
 * <ul>
 *   <li>forward: in each row, in each group of 4 features, keep the 2 largest relu(H) (NaN above every number,
 *       ties: lower index); dH is dYhat * 2 sqrt(Yhat) (with sparse products: on the kept positions, 0
 *       elsewhere);</li>
 *   <li>split backward: each sparse feature's column, tokens taken in permuted order and zero-padded to a
 *       multiple of 4, keeps the 2 largest |values| of each group of 4 positions (ties: lower position);
 *       dense features are summed over all tokens.</li>
 * </ul>
 * The token permutation and the dense-feature set are inputs of the approximation (they come from the library).
 *
 * <p>NaN/Inf: a product with a zero factor is 0 * v in the dense GEMMs but is never computed where a sparse GEMM
 * skips a dropped (or, on tensor cores, any stored-zero) element. {@code sparseProducts = true} models the latter
 * (0 * anything = 0, and unselected tokens contribute nothing): the NaNs every backend must produce;
 * {@code false} the former: the NaNs a backend may produce.
 */
final class ReferenceFfn {
    final int tokens;
    final int d;
    final int f;
    private final DType dtype;
    private final double[] x;
    private final double[] w1;
    private final double[] w2;
    private final boolean sparseProducts;

    double[] yhat;
    boolean[] kept;  // the forward's 2:4 mask over [T, f]
    double[] z;
    long activationNonzeros;
    long forwardKept;

    double[] dx;
    double[] dw1;
    double[] dw2;
    long dw2Nonzeros;
    long dw2Kept;
    long dw1Nonzeros;
    long dw1Kept;

    /** Forward of x [T, d], w1 [f, d], w2 [d, f] (values as stored in the dtype). */
    ReferenceFfn(DType dtype, int tokens, int d, int f, float[] x, float[] w1, float[] w2, boolean sparseForward) {
        this(dtype, tokens, d, f, x, w1, w2, sparseForward, false);
    }

    /** As above; {@code sparseProducts}: 0 * anything = 0 (see the class comment). */
    ReferenceFfn(DType dtype, int tokens, int d, int f, float[] x, float[] w1, float[] w2, boolean sparseForward,
                 boolean sparseProducts) {
        this.sparseProducts = sparseProducts;
        this.dtype = dtype;
        this.tokens = tokens;
        this.d = d;
        this.f = f;
        this.x = widen(x);
        this.w1 = widen(w1);
        this.w2 = widen(w2);
        double[] h = round(matmul(this.x, this.w1, tokens, d, f, false, true));
        yhat = new double[tokens * f];
        kept = new boolean[tokens * f];
        for (int t = 0; t < tokens; t++) {
            for (int g = 0; g < f / 4; g++) {
                double[] score = new double[4];
                for (int j = 0; j < 4; j++) {
                    score[j] = Math.max(h[t * f + 4 * g + j], 0);
                }
                boolean[] keep = sparseForward ? keepTwoLargest(score) : new boolean[] {true, true, true, true};
                for (int j = 0; j < 4; j++) {
                    double square = round(score[j] * score[j]);
                    if (square != 0) {
                        activationNonzeros++;
                    }
                    if (keep[j]) {
                        kept[t * f + 4 * g + j] = true;
                        yhat[t * f + 4 * g + j] = square;
                        forwardKept += square != 0 ? 1 : 0;
                    }
                }
            }
        }
        z = round(matmul(yhat, this.w2, tokens, f, d, false, true, sparseProducts));
    }

    /**
     * Backward for dz [T, d]. {@code perm} (permuted position -> token; null: identity) and {@code denseFeatures}
     * describe the split; {@code split = false} computes the exact weight gradients.
     */
    void backward(float[] dzValues, boolean split, int[] perm, int[] denseFeatures) {
        double[] dz = widen(dzValues);
        double[] dy = round(matmul(dz, w2, tokens, d, f, false, false));
        double[] dh = new double[tokens * f];
        for (int i = 0; i < dh.length; i++) {
            // a dense masked gradient also forms dYhat * 0 where Yhat was dropped (NaN for a non-finite dYhat)
            dh[i] = kept[i] || !sparseProducts ? round(dy[i] * 2 * Math.sqrt(yhat[i])) : 0;
        }
        dx = round(matmul(dh, w1, tokens, f, d, false, false, sparseProducts));
        boolean[] dense = new boolean[f];
        for (int j = 0; j < f; j++) {
            dense[j] = !split;
        }
        if (split) {
            for (int j : denseFeatures) {
                dense[j] = true;
            }
        }
        int[] order = new int[tokens];
        for (int p = 0; p < tokens; p++) {
            order[p] = perm == null ? p : perm[p];
        }
        // dW2 [d, f] = dZ^T Yhat; dW1 [f, d] = dH^T X, each feature j over its selected tokens.
        dw2 = new double[d * f];
        dw1 = new double[f * d];
        long[] counts2 = new long[2];
        long[] counts1 = new long[2];
        for (int j = 0; j < f; j++) {
            boolean[] use2 = selectTokens(yhat, j, order, dense[j], counts2);
            boolean[] use1 = selectTokens(dh, j, order, dense[j], counts1);
            for (int i = 0; i < d; i++) {
                double s2 = 0;
                double s1 = 0;
                for (int t = 0; t < tokens; t++) {
                    s2 += product(dz[t * d + i], use2[t] ? yhat[t * f + j] : 0);
                    s1 += product(use1[t] ? dh[t * f + j] : 0, x[t * d + i]);
                }
                dw2[i * f + j] = round(s2);
                dw1[j * d + i] = round(s1);
            }
        }
        dw2Nonzeros = counts2[0];
        dw2Kept = counts2[1];
        dw1Nonzeros = counts1[0];
        dw1Kept = counts1[1];
    }

    /**
     * Which tokens feature {@code j} of {@code m} [T, f] contributes: all for a dense feature; else 2 of each
     * group of 4 permuted positions. Adds {non-zeros before, kept} of sparse features to {@code counts}.
     */
    private boolean[] selectTokens(double[] m, int j, int[] order, boolean dense, long[] counts) {
        boolean[] use = new boolean[tokens];
        if (dense) {
            java.util.Arrays.fill(use, true);
            return use;
        }
        for (int g = 0; 4 * g < tokens; g++) {
            double[] score = new double[4];
            for (int k = 0; k < 4; k++) {
                int p = 4 * g + k;
                score[k] = p < tokens ? Math.abs(m[order[p] * f + j]) : 0;
                counts[0] += score[k] != 0 ? 1 : 0;
            }
            boolean[] keep = keepTwoLargest(score);
            for (int k = 0; k < 4; k++) {
                if (keep[k] && 4 * g + k < tokens) {
                    use[order[4 * g + k]] = true;
                    counts[1] += score[k] != 0 ? 1 : 0;
                }
            }
        }
        return use;
    }

    /** The 2:4 rule: keep the two largest scores, NaN above every number; on ties the lower index wins. */
    static boolean[] keepTwoLargest(double[] s) {
        boolean[] keep = new boolean[4];
        for (int i = 0; i < 4; i++) {
            int beaten = 0;
            for (int j = 0; j < 4; j++) {
                boolean nanJ = Double.isNaN(s[j]);
                boolean nanI = Double.isNaN(s[i]);
                boolean higher = nanJ != nanI ? nanJ : (nanJ || s[j] == s[i]) ? j < i : s[j] > s[i];
                if (j != i && higher) {
                    beaten++;
                }
            }
            keep[i] = beaten < 2;
        }
        return keep;
    }

    /** a * b, or 0 when a factor is 0 and products are sparse. */
    private double product(double a, double b) {
        return sparseProducts && (a == 0 || b == 0) ? 0 : a * b;
    }

    /** c [m, n] = op(a) op(b) in float64, a [m, k] (or [k, m] transposed), b [k, n] (or [n, k] transposed). */
    static double[] matmul(double[] a, double[] b, int m, int k, int n, boolean aT, boolean bT) {
        return matmul(a, b, m, k, n, aT, bT, false);
    }

    /** As above; {@code sparseProducts}: a zero in a skips the product (0 * NaN = 0). */
    static double[] matmul(double[] a, double[] b, int m, int k, int n, boolean aT, boolean bT,
                           boolean sparseProducts) {
        double[] c = new double[m * n];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int l = 0; l < k; l++) {
                    double av = aT ? a[l * m + i] : a[i * k + l];
                    if (!(sparseProducts && av == 0)) {
                        s += av * (bT ? b[j * k + l] : b[l * n + j]);
                    }
                }
                c[i * n + j] = s;
            }
        }
        return c;
    }

    static double[] widen(float[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i];
        }
        return out;
    }

    private double round(double v) {
        return dtype.round((float) v);
    }

    private double[] round(double[] v) {
        for (int i = 0; i < v.length; i++) {
            v[i] = round(v[i]);
        }
        return v;
    }
}
