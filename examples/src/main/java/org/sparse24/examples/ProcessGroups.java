package org.sparse24.examples;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.bytedeco.pytorch.Backend;
import org.bytedeco.pytorch.FileStore;
import org.bytedeco.pytorch.ProcessGroupGloo;
import org.bytedeco.pytorch.nccl.ProcessGroupNCCL;

/**
 * c10d process groups as the examples use them: every rank of one host meets through a {@link FileStore} (a file
 * on local disk that must not exist before the first rank opens it); NCCL for CUDA tensors, Gloo for CPU tensors.
 * Both are LibTorch's own {@link Backend}s, used through the same calls (allreduce, broadcast, barrier).
 */
final class ProcessGroups {
    /**
     * What every process on a GPU host must have in its environment: NVLink multicast off (NCCL's NVLS, LibTorch's
     * symmetric memory and NVSHMEM would otherwise create multicast objects).
     */
    static final Map<String, String> MULTICAST_OFF = Map.of("NCCL_NVLS_ENABLE", "0",
            "TORCH_SYMM_MEM_DISABLE_MULTICAST", "1", "NVSHMEM_DISABLE_NVLS", "1");

    private ProcessGroups() {
    }

    /**
     * The NCCL group of rank {@code rank} of {@code world} (CUDA tensors). Checks {@link #MULTICAST_OFF} in this
     * process's environment first.
     *
     * @throws IllegalStateException if a variable of {@link #MULTICAST_OFF} is missing or has another value
     */
    static Backend nccl(Path store, int rank, int world) {
        requireMulticastOff(System.getenv());
        return new ProcessGroupNCCL(fileStore(store, world), rank, world);
    }

    /** The Gloo group of rank {@code rank} of {@code world} (CPU tensors), over the loopback interface. */
    static Backend gloo(Path store, int rank, int world) {
        return gloo(fileStore(store, world), rank, world);
    }

    /** The Gloo group of rank {@code rank} of {@code world} over {@code store} (see {@link #fileStore}). */
    static Backend gloo(FileStore store, int rank, int world) {
        ProcessGroupGloo.Options options = ProcessGroupGloo.Options.create();
        options.devices().push_back(ProcessGroupGloo.createDeviceForHostname("127.0.0.1"));
        return new ProcessGroupGloo(store, rank, world, options);
    }

    /** NCCL for a CUDA run, Gloo for a CPU one. */
    static Backend forDevice(boolean cuda, Path store, int rank, int world) {
        return cuda ? nccl(store, rank, world) : gloo(store, rank, world);
    }

    /** Ends a group's communicators cleanly (NCCL); nothing for null or Gloo. */
    static void shutdown(Backend group) {
        if (group instanceof ProcessGroupNCCL nccl) {
            nccl.shutdown();
        }
    }

    /** A FileStore for a process group: the group that takes it owns it (see below). */
    static FileStore fileStore(Path store, int world) {
        if (store == null) {
            throw new IllegalArgumentException("a rendezvous file (store) is required");
        }
        FileStore fileStore = new FileStore(store.toAbsolutePath().toString(), world);
        // The preset allocates a FileStore with plain new and a deallocator of its own, and a process group takes
        // it as c10::intrusive_ptr (stealing it: reference count 1, owned by the group). If the Java object were
        // collected or closed, the group's store would be deleted under it (on two H200s: NCCL's heartbeat monitor
        // crashed, "corrupted double-linked list" after the first GC). So Java gives up its ownership: neither the
        // collector nor a PointerScope deletes it; the last group holding it does.
        fileStore.retainReference();
        fileStore.deallocate(false);
        return fileStore;
    }

    /** Throws naming every variable of {@link #MULTICAST_OFF} that {@code env} lacks or sets otherwise. */
    static void requireMulticastOff(Map<String, String> env) {
        List<String> wrong = new ArrayList<>();
        MULTICAST_OFF.forEach((name, value) -> {
            if (!value.equals(env.get(name))) {
                wrong.add(name + "=" + value + " (is " + (env.containsKey(name) ? "'" + env.get(name) + "'" : "unset")
                        + ")");
            }
        });
        if (!wrong.isEmpty()) {
            wrong.sort(null);
            throw new IllegalStateException("NVLink multicast must be off in every process: set " + wrong
                    + " in the environment (examples/train-ddp.sh does)");
        }
    }
}
