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
 *
 * <p>Next to each output it computes a per-element error bound ({@code zBound}, ...): the library's fp32 sums of
 * K products may differ from the exact ones by K ulp(fp32) of the sum of |products|, each stored tensor by one
 * dtype rounding (the reference's and the library's may round to neighbours: 2u|value|), and these differences
 * are carried through every later product by first-order propagation. A 2:4 choice whose scores lie within their
 * bounds of each other is ambiguous: the entries involved may be kept or dropped, and their whole value joins the
 * bound of everything they feed.
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
    /** Unit roundoff of the dtype (half its ulp at 1) and of the fp32 accumulation. */
    private final double u;
    private static final double ACC = 0x1p-24;
    /** Half the dtype's smallest subnormal: the absolute rounding error near zero. */
    private final double tiny;

    double[] yhat;
    boolean[] kept;  // the forward's 2:4 mask over [T, f]
    /** Bound on |library's Yhat - yhat| per element (ambiguous 2:4 choices count their whole value). */
    double[] yhatBound;
    double[] z;
    double[] zBound;
    long activationNonzeros;
    long forwardKept;

    double[] dx;
    double[] dw1;
    double[] dw2;
    double[] dxBound;
    double[] dw1Bound;
    double[] dw2Bound;
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
        this.u = dtype == DType.FP32 ? 0x1p-24 : dtype == DType.FP16 ? 0x1p-11 : 0x1p-8;
        this.tiny = dtype == DType.FP32 ? 0x1p-150 : dtype == DType.FP16 ? 0x1p-25 : 0x1p-134;
        double[] h = round(matmul(this.x, this.w1, tokens, d, f, false, true));
        double[] hBound = bound(h, matmul(abs(this.x), abs(this.w1), tokens, d, f, false, true), null, d);
        yhat = new double[tokens * f];
        kept = new boolean[tokens * f];
        yhatBound = new double[tokens * f];
        for (int t = 0; t < tokens; t++) {
            for (int g = 0; g < f / 4; g++) {
                double[] score = new double[4];
                double[] scoreBound = new double[4];
                for (int j = 0; j < 4; j++) {
                    score[j] = Math.max(h[t * f + 4 * g + j], 0);
                    scoreBound[j] = hBound[t * f + 4 * g + j];
                }
                boolean[] keep = sparseForward ? keepTwoLargest(score) : new boolean[] {true, true, true, true};
                boolean[] ambiguous = sparseForward ? ambiguousChoices(score, scoreBound) : new boolean[4];
                for (int j = 0; j < 4; j++) {
                    double square = round(score[j] * score[j]);
                    double e = scoreBound[j];
                    double squareBound = (2 * score[j] + e) * e + 2 * u * square + tiny;
                    if (square != 0) {
                        activationNonzeros++;
                    }
                    if (keep[j]) {
                        kept[t * f + 4 * g + j] = true;
                        yhat[t * f + 4 * g + j] = square;
                        forwardKept += square != 0 ? 1 : 0;
                    }
                    yhatBound[t * f + 4 * g + j] = ambiguous[j] ? square + squareBound : keep[j] ? squareBound : 0;
                }
            }
        }
        z = round(matmul(yhat, this.w2, tokens, f, d, false, true, sparseProducts));
        zBound = bound(z, matmul(abs(yhat), abs(this.w2), tokens, f, d, false, true),
                matmul(plus(abs(yhat), yhatBound), abs(this.w2), tokens, f, d, false, true), f);
    }

    /**
     * Backward for dz [T, d]. {@code perm} (permuted position -> token; null: identity) and {@code denseFeatures}
     * describe the split; {@code split = false} computes the exact weight gradients.
     */
    void backward(float[] dzValues, boolean split, int[] perm, int[] denseFeatures) {
        double[] dz = widen(dzValues);
        double[] dy = round(matmul(dz, w2, tokens, d, f, false, false));
        double[] dyBound = bound(dy, matmul(abs(dz), abs(w2), tokens, d, f, false, false), null, d);
        double[] dh = new double[tokens * f];
        double[] dhBound = new double[tokens * f];
        for (int i = 0; i < dh.length; i++) {
            double root = Math.sqrt(yhat[i]);
            double e = yhatBound[i];
            // |sqrt(a) - sqrt(b)| <= sqrt(|a - b|), and <= |a - b| / sqrt(max(a, b))
            double rootBound = e == 0 ? 0 : root > 0 ? Math.min(Math.sqrt(e), e / root) : Math.sqrt(e);
            // a dense masked gradient also forms dYhat * 0 where Yhat was dropped (NaN for a non-finite dYhat)
            dh[i] = kept[i] || !sparseProducts ? round(dy[i] * 2 * root) : 0;
            double exact = 2 * Math.abs(dy[i]) * root;
            double loose = 2 * (Math.abs(dy[i]) + dyBound[i]) * (root + rootBound);
            dhBound[i] = loose - exact + 2 * ACC * loose + 2 * u * Math.abs(dh[i]) + tiny;
        }
        dx = round(matmul(dh, w1, tokens, f, d, false, false, sparseProducts));
        dxBound = bound(dx, matmul(abs(dh), abs(w1), tokens, f, d, false, false),
                matmul(plus(abs(dh), dhBound), abs(w1), tokens, f, d, false, false), f);
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
        dw2Bound = new double[d * f];
        dw1Bound = new double[f * d];
        long[] counts2 = new long[2];
        long[] counts1 = new long[2];
        for (int j = 0; j < f; j++) {
            double[] error2 = new double[tokens];
            double[] error1 = new double[tokens];
            boolean[] use2 = selectTokens(yhat, yhatBound, j, order, dense[j], counts2, error2);
            boolean[] use1 = selectTokens(dh, dhBound, j, order, dense[j], counts1, error1);
            for (int i = 0; i < d; i++) {
                double s2 = 0;
                double s1 = 0;
                double[] b2 = new double[2];
                double[] b1 = new double[2];
                for (int t = 0; t < tokens; t++) {
                    double dzi = Math.abs(dz[t * d + i]);
                    double xi = Math.abs(x[t * d + i]);
                    s2 += product(dz[t * d + i], use2[t] ? yhat[t * f + j] : 0);
                    s1 += product(use1[t] ? dh[t * f + j] : 0, x[t * d + i]);
                    b2[0] += dzi * error2[t];
                    b2[1] += dzi * (use2[t] || error2[t] != 0 ? Math.abs(yhat[t * f + j]) + error2[t] : 0);
                    b1[0] += xi * error1[t];
                    b1[1] += xi * (use1[t] || error1[t] != 0 ? Math.abs(dh[t * f + j]) + error1[t] : 0);
                }
                dw2[i * f + j] = round(s2);
                dw1[j * d + i] = round(s1);
                dw2Bound[i * f + j] = b2[0] + (tokens + 2) * ACC * b2[1] + 2 * u * Math.abs(dw2[i * f + j]) + tiny;
                dw1Bound[j * d + i] = b1[0] + (tokens + 2) * ACC * b1[1] + 2 * u * Math.abs(dw1[j * d + i]) + tiny;
            }
        }
        dw2Nonzeros = counts2[0];
        dw2Kept = counts2[1];
        dw1Nonzeros = counts1[0];
        dw1Kept = counts1[1];
    }

    /**
     * Which tokens feature {@code j} of {@code m} [T, f] contributes: all for a dense feature; else 2 of each
     * group of 4 permuted positions. Adds {non-zeros before, kept} of sparse features to {@code counts}; sets
     * {@code error[t]} to the bound on token t's term (m's bound if surely kept, |m| + bound if the choice is
     * ambiguous, 0 if surely dropped).
     */
    private boolean[] selectTokens(double[] m, double[] mBound, int j, int[] order, boolean dense, long[] counts,
                                   double[] error) {
        boolean[] use = new boolean[tokens];
        if (dense) {
            java.util.Arrays.fill(use, true);
            for (int t = 0; t < tokens; t++) {
                error[t] = mBound[t * f + j];
            }
            return use;
        }
        for (int g = 0; 4 * g < tokens; g++) {
            double[] score = new double[4];
            double[] scoreBound = new double[4];
            for (int k = 0; k < 4; k++) {
                int p = 4 * g + k;
                score[k] = p < tokens ? Math.abs(m[order[p] * f + j]) : 0;
                scoreBound[k] = p < tokens ? mBound[order[p] * f + j] : 0;
                counts[0] += score[k] != 0 ? 1 : 0;
            }
            boolean[] keep = keepTwoLargest(score);
            boolean[] ambiguous = ambiguousChoices(score, scoreBound);
            for (int k = 0; k < 4 && 4 * g + k < tokens; k++) {
                int t = order[4 * g + k];
                if (keep[k]) {
                    use[t] = true;
                    counts[1] += score[k] != 0 ? 1 : 0;
                }
                error[t] = ambiguous[k] ? score[k] + scoreBound[k] : keep[k] ? scoreBound[k] : 0;
            }
        }
        return use;
    }

    /**
     * Entries of a group whose 2:4 fate is open: scores known only within +-{@code bound} may be beaten by 2
     * others, or not, depending on values inside the bounds.
     */
    static boolean[] ambiguousChoices(double[] s, double[] bound) {
        boolean[] open = new boolean[4];
        for (int i = 0; i < 4; i++) {
            int surely = 0;
            int possibly = 0;
            for (int j = 0; j < 4; j++) {
                if (j == i) {
                    continue;
                }
                double gap = s[j] - s[i];
                double slack = bound[i] + bound[j];
                boolean lowerWinsTie = j < i;
                surely += gap > slack || (slack == 0 && gap == 0 && lowerWinsTie) ? 1 : 0;
                possibly += gap > -slack || (gap == -slack && (slack > 0 || lowerWinsTie)) ? 1 : 0;
            }
            open[i] = surely < 2 && possibly >= 2;
        }
        return open;
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

    /**
     * The bound on a stored product {@code c} of K-term sums: the propagated input bounds ({@code loose - exact},
     * where {@code exact} sums |a||b| and {@code loose} sums (|a| + bound a)(|b| + bound b); null: exact inputs),
     * the fp32 accumulation (K + 2 units of the loose sum) and the two roundings to the dtype.
     */
    private double[] bound(double[] c, double[] exact, double[] loose, int k) {
        double[] b = new double[c.length];
        for (int i = 0; i < c.length; i++) {
            double l = loose == null ? exact[i] : loose[i];
            b[i] = (l - exact[i]) + (k + 2) * ACC * l + 2 * u * Math.abs(c[i]) + tiny;
        }
        return b;
    }

    static double[] abs(double[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = Math.abs(v[i]);
        }
        return out;
    }

    static double[] plus(double[] a, double[] b) {
        double[] out = new double[a.length];
        for (int i = 0; i < a.length; i++) {
            out[i] = a[i] + b[i];
        }
        return out;
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
