package org.sparse24;

/**
 * A failure reported by the native library. The message starts with the native status name, e.g.
 * {@code "S24_ERROR_BACKEND_UNAVAILABLE: no CUDA device ..."}, followed by the library's explanation.
 */
public class Sparse24Exception extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int code;
    private final String status;

    /**
     * @param code    the native {@code s24_status} value
     * @param status  its name, e.g. {@code "S24_ERROR_CUDA"}
     * @param message what failed
     */
    public Sparse24Exception(int code, String status, String message) {
        super(status + ": " + message);
        this.code = code;
        this.status = status;
    }

    /** The native {@code s24_status} value. */
    public int code() {
        return code;
    }

    /** The native status name, e.g. {@code "S24_ERROR_INVALID_ARGUMENT"}. */
    public String status() {
        return status;
    }
}
