package org.sparse24.examples;

import java.util.ArrayList;
import java.util.List;

import org.bytedeco.pytorch.Backend;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorBase;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.VoidTensorHook;
import org.bytedeco.pytorch.Work;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * Data-parallel gradient averaging over a c10d process group (NCCL on GPUs, Gloo on the CPU): the parameters are
 * grouped into buckets of about {@code bucketBytes}, in reverse forward order (the order their gradients become
 * ready); each bucket's gradients are copied into one flat fp32 tensor, divided by the world size and all-reduced
 * (sum) as one collective, then copied back into the parameters' {@code .grad}.
 *
 * <p>With {@code overlap}, a hook on each parameter (a leaf: autograd calls it once per backward, with the summed
 * gradient, just before accumulating it) copies its gradient into its bucket and launches the bucket's all-reduce
 * as soon as the bucket's last gradient arrived, while the backward goes on computing the earlier layers'
 * gradients. Without it, {@link #finish} does everything after the backward. Either way call {@link #finish} after
 * each {@code backward()}: it launches what is left, waits, and writes the averaged gradients. One backward per
 * step (no gradient accumulation: the hooks see the step's whole gradient). Every rank must build its buckets from
 * the same parameter list: collectives are matched by their order.
 */
final class GradientBuckets implements AutoCloseable {
    /** PyTorch DDP's default bucket size. */
    static final long DEFAULT_BUCKET_BYTES = 25L << 20;

    private final Backend group;
    private final int world;
    private final List<Tensor> params;
    private final List<Bucket> buckets = new ArrayList<>();
    private final int[] bucketOf;
    private final long[] offsetOf;
    private final boolean[] ready;
    private final List<VoidTensorHook> hooks = new ArrayList<>(); // kept alive while registered
    private final int[] hookHandles;
    private int launchedInBackward; // buckets the hooks launched since the last finish()
    private int lastLaunchedInBackward;

    private static final class Bucket {
        final int[] members;
        final Tensor flat;
        int arrived;
        Work work;

        Bucket(int[] members, Tensor flat) {
            this.members = members;
            this.flat = flat;
        }
    }

    /**
     * @param group       the process group (every rank calls with the same parameters in the same order)
     * @param params      the model's parameters in forward order (fp32 leaves on one device)
     * @param bucketBytes a bucket is closed once it holds at least this many bytes of fp32 gradients
     * @param overlap     all-reduce each bucket from the backward, as soon as its gradients are ready
     */
    GradientBuckets(Backend group, List<Tensor> params, long bucketBytes, boolean overlap) {
        if (bucketBytes <= 0) {
            throw new IllegalArgumentException("bucketBytes must be > 0, got " + bucketBytes);
        }
        this.group = group;
        this.world = group.getSize();
        this.params = List.copyOf(params);
        int n = params.size();
        long[] numels = new long[n];
        for (int i = 0; i < n; i++) {
            Tensor p = params.get(i);
            if (p.scalar_type().value != ScalarType.Float.value || !p.requires_grad()) {
                throw new IllegalArgumentException("parameter " + i + " must be an fp32 tensor requiring grad, got "
                        + p.scalar_type() + (p.requires_grad() ? "" : " without requires_grad"));
            }
            numels[i] = p.numel();
        }
        bucketOf = new int[n];
        offsetOf = new long[n];
        ready = new boolean[n];
        for (int[] members : assign(numels, bucketBytes)) {
            long size = 0;
            for (int i : members) {
                bucketOf[i] = buckets.size();
                offsetOf[i] = size;
                size += numels[i];
            }
            Tensor first = params.get(members[0]);
            buckets.add(new Bucket(members, torch.zeros(size).to(first.device(), ScalarType.Float)));
        }
        hookHandles = new int[overlap ? n : 0];
        if (overlap) {
            for (int i = 0; i < n; i++) {
                int index = i;
                VoidTensorHook hook = new VoidTensorHook() {
                    @Override
                    public void call(TensorBase grad) {
                        arrived(index, new Tensor(grad));
                    }
                };
                hooks.add(hook);
                hookHandles[i] = params.get(i).register_hook(hook);
            }
        }
    }

    /**
     * The buckets for parameters of {@code numels[i]} fp32 elements given in forward order: filled from the last
     * parameter backwards, a bucket closed once it holds at least {@code bucketBytes}. Returns each bucket's
     * parameter indices in the order they are filled.
     */
    static List<int[]> assign(long[] numels, long bucketBytes) {
        List<int[]> result = new ArrayList<>();
        List<Integer> current = new ArrayList<>();
        long bytes = 0;
        for (int i = numels.length - 1; i >= 0; i--) {
            current.add(i);
            bytes += 4 * numels[i];
            if (bytes >= bucketBytes || i == 0) {
                result.add(current.stream().mapToInt(Integer::intValue).toArray());
                current.clear();
                bytes = 0;
            }
        }
        return result;
    }

    /** How many buckets there are. */
    int bucketCount() {
        return buckets.size();
    }

    /** Makes every rank's parameters equal rank 0's (once, before training). */
    void broadcastParameters() {
        try (NoGradGuard noGrad = new NoGradGuard()) {
            for (Tensor p : params) {
                group.broadcast(new TensorVector(p.detach()))._wait();
            }
        }
    }

    /** The hook of parameter i: its gradient is final; launch its bucket once the bucket is complete. */
    private void arrived(int i, Tensor grad) {
        try (NoGradGuard noGrad = new NoGradGuard()) {
            Bucket b = buckets.get(bucketOf[i]);
            b.flat.narrow(0, offsetOf[i], params.get(i).numel()).copy_(grad.reshape(-1));
            ready[i] = true;
            if (++b.arrived == b.members.length) {
                launch(b);
                launchedInBackward++;
            }
        }
    }

    private void launch(Bucket b) {
        b.flat.div_(new Scalar((double) world));
        b.work = group.allreduce(new TensorVector(b.flat));
    }

    /**
     * After the backward: fills and launches the buckets not launched yet (all of them without overlap; a
     * parameter the backward did not reach contributes its current gradient, or zeros), waits for every
     * all-reduce (on the GPU: the current stream waits, the host does not) and writes the averaged gradients into
     * the parameters' {@code .grad}.
     */
    void finish() {
        try (NoGradGuard noGrad = new NoGradGuard()) {
            for (Bucket b : buckets) {
                if (b.work != null) {
                    continue;
                }
                for (int i : b.members) {
                    if (!ready[i]) {
                        Tensor g = params.get(i).grad();
                        Tensor slot = b.flat.narrow(0, offsetOf[i], params.get(i).numel());
                        if (g.defined()) {
                            slot.copy_(g.reshape(-1));
                        } else {
                            slot.zero_();
                        }
                    }
                }
                launch(b);
            }
            for (Bucket b : buckets) {
                b.work._wait();
                for (int i : b.members) {
                    Tensor p = params.get(i);
                    Tensor averaged = b.flat.narrow(0, offsetOf[i], p.numel()).view_as(p);
                    Tensor g = p.grad();
                    if (g.defined()) {
                        g.copy_(averaged);
                    } else {
                        p.mutable_grad().put(averaged.clone());
                    }
                    ready[i] = false;
                }
                b.arrived = 0;
                b.work = null;
            }
            lastLaunchedInBackward = launchedInBackward;
            launchedInBackward = 0;
        }
    }

    /** How many buckets the last step all-reduced from inside its backward (overlapped). */
    int overlappedBuckets() {
        return lastLaunchedInBackward;
    }

    @Override
    public void close() {
        for (int i = 0; i < hookHandles.length; i++) {
            params.get(i).remove_hook(hookHandles[i]);
        }
        hooks.clear();
    }
}
