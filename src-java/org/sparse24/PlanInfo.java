package org.sparse24;

/**
 * How a {@link SparseFfn} runs for one token count on its context's backend.
 *
 * @param tokens             T
 * @param sparseForwardPath  whether the forward runs sparse GEMMs on this backend and shape
 * @param sparseBackwardPath whether the backward runs sparse GEMMs on this backend and shape
 * @param denseFeatures      features computed densely in the split backward
 * @param workspaceBytes     scratch the context needs for this plan (shared across plans; kept between calls by
 *                           the rule of {@link Sparse24#setScratchRetention})
 * @param savedBytes         memory one {@link SavedState} of this plan holds
 */
public record PlanInfo(long tokens, boolean sparseForwardPath, boolean sparseBackwardPath, long denseFeatures,
                       long workspaceBytes, long savedBytes) {
}
