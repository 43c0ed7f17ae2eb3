package org.sparse24.torch;

import java.util.Arrays;
import java.util.concurrent.ConcurrentHashMap;

import org.bytedeco.javacpp.Pointer;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.LongArrayRef;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.sparse24.Backend;
import org.sparse24.DType;
import org.sparse24.Sparse24;
import org.sparse24.internal.Shapes;

/**
 * Zero-copy conversions between LibTorch tensors ({@code org.bytedeco.pytorch.Tensor}) and sparse24 tensors
 * ({@link org.sparse24.Tensor}).
 *
 * <ul>
 *   <li>{@link #borrow} wraps a LibTorch tensor's memory as a sparse24 tensor (no copy): it must be contiguous
 *       (call {@code t.contiguous()} first otherwise: that copies, explicitly), of a sparse24 dtype ({@code Float}
 *       = FP32, {@code BFloat16} = BF16, {@code Half} = FP16) and on the context's device (a CPU tensor for the
 *       CPU backend, a CUDA tensor of the same device index for the CUDA backend).</li>
 *   <li>{@link #empty} allocates a LibTorch tensor on the context's device, e.g. for outputs, which
 *       {@link #borrow} then hands to sparse24.</li>
 *   <li>{@link #view} goes the other way: a LibTorch tensor over a sparse24 tensor's memory.</li>
 *   <li>{@link #useCurrentStream} makes a CUDA context enqueue on LibTorch's current CUDA stream, so that sparse24
 *       and LibTorch work is ordered without synchronization.</li>
 * </ul>
 * Every check throws {@link IllegalArgumentException} naming the argument, what was expected and what was
 * given. This package needs the {@code org.bytedeco:pytorch} preset (an optional dependency of sparse24) and its
 * natives: {@code pytorch-platform} for the CPU, {@code pytorch-platform-gpu} for CUDA.
 */
public final class TorchTensors {
    private TorchTensors() {
    }

    /**
     * Options of {@link #empty} and {@link #view} by device and dtype, and the device optionals of
     * {@link #deviceOptional}, made once and never freed: each holds a reference of its own, as one made inside a
     * caller's PointerScope would be freed with it. LibTorch only reads them, so threads share them.
     */
    private static final ConcurrentHashMap<Integer, TensorOptions> OPTIONS = new ConcurrentHashMap<>();
    private static final ConcurrentHashMap<Integer, DeviceOptional> DEVICES = new ConcurrentHashMap<>();
    private static final MemoryFormatOptional NO_FORMAT = new MemoryFormatOptional().retainReference();

    /**
     * The sparse24 dtype of a LibTorch scalar type: Float, BFloat16, Half, or Int, Long, Byte (the integer
     * arrays of the ops); other types are rejected.
     */
    public static DType dtype(ScalarType type) {
        if (type == null) {
            throw new IllegalArgumentException("scalar type must not be null (Float, BFloat16 or Half)");
        }
        switch (type.intern()) { // enums returned by the preset's natives are copies: intern() them
            case Float:
                return DType.FP32;
            case BFloat16:
                return DType.BF16;
            case Half:
                return DType.FP16;
            case Int:
                return DType.INT32;
            case Long:
                return DType.INT64;
            case Byte:
                return DType.UINT8;
            default:
                throw new IllegalArgumentException("scalar type " + type
                        + " has no sparse24 dtype: expected Float (FP32), BFloat16 (BF16) or Half (FP16) for"
                        + " matrices, Int (INT32), Long (INT64) or Byte (UINT8) for index arrays");
        }
    }

    /** The LibTorch scalar type of a sparse24 dtype. */
    public static ScalarType scalarType(DType dtype) {
        if (dtype == null) {
            throw new IllegalArgumentException("dtype must not be null (BF16, FP16 or FP32)");
        }
        switch (dtype) {
            case FP32:
                return ScalarType.Float;
            case BF16:
                return ScalarType.BFloat16;
            case FP16:
                return ScalarType.Half;
            case INT32:
                return ScalarType.Int;
            case INT64:
                return ScalarType.Long;
            case UINT8:
                return ScalarType.Byte;
            default:
                throw new IllegalArgumentException("unknown dtype " + dtype);
        }
    }

    /** The LibTorch device of a context: {@code cpu} for the CPU backend, {@code cuda:<device>} for CUDA. */
    public static Device device(Sparse24 context) {
        requireContext(context);
        if (context.backend() == Backend.CUDA) {
            return new Device(torch.DeviceType.CUDA, (byte) context.info().device());
        }
        return new Device(torch.DeviceType.CPU);
    }

    /** The device the tensors of {@code context} live on, as LibTorch writes it: "cpu" or "cuda:N". */
    static String deviceName(Sparse24 context) {
        return context.backend() == Backend.CUDA ? "cuda:" + context.info().device() : "cpu";
    }

    /** {@link #borrow(Sparse24, Tensor, String)} with the name "tensor" in messages. */
    public static org.sparse24.Tensor borrow(Sparse24 context, Tensor tensor) {
        return borrow(context, tensor, "tensor");
    }

    /**
     * Wraps {@code tensor}'s memory as a sparse24 tensor of the same shape and dtype, without copying. The
     * wrapper only borrows: {@code tensor} must stay alive (and must not be resized) while it is used; closing it
     * frees nothing. Close it when done (the context tracks it until then).
     *
     * @param name the argument's name in messages (and the sparse24 tensor's {@link org.sparse24.Tensor#name})
     * @throws IllegalArgumentException if {@code tensor} is undefined, empty, not strided, not contiguous, of
     *                                  another dtype than Float/BFloat16/Half or on another device than the
     *                                  context's
     */
    public static org.sparse24.Tensor borrow(Sparse24 context, Tensor tensor, String name) {
        requireContext(context);
        DType dtype = check(context, tensor, name);
        long[] shape = sizes(tensor);
        if (shape.length == 0) {
            shape = new long[] {1}; // a 0-dim tensor holds one element
        }
        return borrowChecked(context, tensor, dtype, name, shape);
    }

    /**
     * A wrapper of {@code tensor}'s memory with shape {@code shape} (same element count, e.g. [T, d] over a
     * [B, S, d] tensor); same checks as {@link #borrow(Sparse24, Tensor, String)}.
     */
    public static org.sparse24.Tensor borrow(Sparse24 context, Tensor tensor, String name, long... shape) {
        requireContext(context);
        DType dtype = check(context, tensor, name);
        long n = 1;
        for (long extent : shape) {
            n = Math.multiplyExact(n, extent);
        }
        if (n != tensor.numel()) {
            throw new IllegalArgumentException(name + ": cannot view a tensor of " + tensor.numel() + " elements "
                    + Arrays.toString(sizes(tensor)) + " as " + Arrays.toString(shape));
        }
        return borrowChecked(context, tensor, dtype, name, shape);
    }

    /** {@link #borrow(Sparse24, Tensor, String, long...)} of a tensor already checked to be of {@code dtype}. */
    static org.sparse24.Tensor borrowChecked(Sparse24 context, Tensor tensor, DType dtype, String name,
                                             long... shape) {
        return org.sparse24.Tensor.borrow(context, tensor.data_ptr(), dtype, shape).named(name);
    }

    /**
     * A new, uninitialized LibTorch tensor of {@code dtype} and {@code shape} on {@code context}'s device (the
     * CPU, or the context's CUDA device through LibTorch's caching allocator on its current stream).
     */
    public static Tensor empty(Sparse24 context, DType dtype, long... shape) {
        requireContext(context);
        Shapes.checked(shape);
        return torch.empty(shape, options(context, dtype), NO_FORMAT);
    }

    /**
     * A LibTorch tensor over {@code tensor}'s memory (no copy, no ownership): valid while {@code tensor} is open,
     * which the caller must ensure. Shape, dtype and device are {@code tensor}'s.
     */
    public static Tensor view(org.sparse24.Tensor tensor) {
        if (tensor == null) {
            throw new IllegalArgumentException("tensor must not be null");
        }
        Pointer data = tensor.data(); // throws if closed
        return torch.from_blob(data, tensor.shape(), options(tensor.context(), tensor.dtype()));
    }

    /**
     * On a CUDA context: makes the context enqueue on LibTorch's current CUDA stream of its device (waiting once
     * for the context's previous stream if it changes), so that sparse24 work is ordered after the LibTorch work
     * that produced its inputs and before the LibTorch work that reads its outputs. No effect on the CPU backend.
     * {@link SparseFfnFunction} calls it on every forward and backward.
     */
    public static void useCurrentStream(Sparse24 context) {
        requireContext(context);
        if (context.backend() == Backend.CUDA) {
            Pointer stream = CudaStreams.current(context.info().device());
            if (context.stream().address() != stream.address()) {
                context.setStream(stream);
            }
        }
    }

    /**
     * Checks that {@code tensor} can be borrowed by {@code context}: defined, strided, contiguous, non-empty,
     * a sparse24 dtype, on the context's device. Returns its dtype.
     */
    static DType check(Sparse24 context, Tensor tensor, String name) {
        if (tensor == null || tensor.isNull() || !tensor.defined()) {
            throw new IllegalArgumentException(name + " must be a defined LibTorch tensor, got "
                    + (tensor == null ? "null" : "an undefined tensor"));
        }
        boolean cuda = context.backend() == Backend.CUDA;
        boolean sameDevice;
        if (cuda) {
            try (Device device = tensor.device()) {
                sameDevice = device.is_cuda() && device.index() == context.info().device();
            }
        } else {
            sameDevice = tensor.is_cpu();
        }
        if (!sameDevice) {
            String got;
            try (Device device = tensor.device()) {
                got = device.str().getString();
            }
            throw new IllegalArgumentException(name + ": expected a tensor on " + deviceName(context)
                    + " (the sparse24 " + context.backend() + " context's device), got one on " + got
                    + "; move it with .to(...) or use a context on its device");
        }
        if (tensor.layout().intern() != torch.Layout.Strided) {
            throw new IllegalArgumentException(name + ": expected a dense (strided) tensor, got layout "
                    + tensor.layout());
        }
        DType dtype;
        try {
            dtype = dtype(tensor.scalar_type());
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(name + ": " + e.getMessage(), e);
        }
        if (tensor.numel() == 0) {
            throw new IllegalArgumentException(name + ": expected a non-empty tensor, got shape "
                    + Arrays.toString(sizes(tensor)));
        }
        if (!tensor.is_contiguous()) {
            throw new IllegalArgumentException(name + ": expected a contiguous (row-major) tensor, got sizes "
                    + Arrays.toString(sizes(tensor)) + " with strides " + Arrays.toString(strides(tensor))
                    + "; call " + name + ".contiguous() first (it copies; autograd flows through it)");
        }
        return dtype;
    }

    /** {@code tensor.sizes()} as a Java array. */
    static long[] sizes(Tensor tensor) {
        long[] a = new long[(int) tensor.dim()];
        for (int i = 0; i < a.length; i++) {
            a[i] = tensor.size(i);
        }
        return a;
    }

    /** {@code tensor.strides()} as a Java array. */
    static long[] strides(Tensor tensor) {
        return toArray(tensor.strides());
    }

    private static long[] toArray(LongArrayRef ref) {
        long[] a = new long[(int) ref.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = ref.get(i);
        }
        return a;
    }

    /** Options of {@code dtype} on the context's device (shared: never close them). */
    static TensorOptions options(Sparse24 context, DType dtype) {
        requireContext(context);
        ScalarType type = scalarType(dtype);
        return OPTIONS.computeIfAbsent(deviceKey(context) * 64 + dtype.ordinal(), k -> {
            try (TensorOptions typed = new TensorOptions(type)) {
                return typed.device(deviceOptional(context)).retainReference();
            }
        });
    }

    /** The context's device as a {@code DeviceOptional} (shared: never close it). */
    static DeviceOptional deviceOptional(Sparse24 context) {
        requireContext(context);
        return DEVICES.computeIfAbsent(deviceKey(context), k -> {
            try (Device device = device(context)) {
                return new DeviceOptional(device).retainReference();
            }
        });
    }

    /** 0 for the CPU, 1 + the device index for CUDA. */
    private static int deviceKey(Sparse24 context) {
        return context.backend() == Backend.CUDA ? 1 + context.info().device() : 0;
    }

    private static void requireContext(Sparse24 context) {
        if (context == null) {
            throw new IllegalArgumentException("context must not be null");
        }
        if (context.isClosed()) {
            throw new IllegalStateException("the sparse24 context (" + context.backend() + ") is closed");
        }
    }
}
