package org.sparse24;

/**
 * What a {@link Sparse24} context holds between calls for its calls' temporaries, and the rule that releases
 * them ({@link Sparse24#setScratchRetention}).
 *
 * @param retainedBytes   held now: {@code ffnScratchBytes + workspaceBytes}
 * @param ffnScratchBytes the FFN's scratch buffer (one per context, shared by every {@link SparseFfn} of it)
 * @param workspaceBytes  the building blocks' workspaces and temporaries (CUDA: the cuBLASLt workspaces, the
 *                        sparse GEMM's workspace and temporaries; 0 on the CPU backend)
 * @param maxBytes        the rule's high-water mark ({@link Long#MAX_VALUE}: never released by the rule)
 * @param calls           the rule's window: how many of the latest calls that used scratch it keeps memory for
 * @param releases        buffers released so far, by the rule and by {@link Sparse24#releaseScratch()}; steady
 *                        growth from step to step means the rule releases what the next step allocates again
 */
public record ScratchMemory(long retainedBytes, long ffnScratchBytes, long workspaceBytes, long maxBytes, long calls,
                            long releases) {
}
