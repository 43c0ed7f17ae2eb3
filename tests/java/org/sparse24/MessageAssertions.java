package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.function.Executable;

/** Assertions on exception messages, shared by the tests of every package. */
public final class MessageAssertions {
    private MessageAssertions() {
    }

    /** Asserts that {@code call} throws {@code type} with a message containing every one of {@code parts}. */
    public static <E extends Throwable> E assertThrowsNaming(Class<E> type, Executable call, String... parts) {
        E e = assertThrows(type, call);
        for (String part : parts) {
            assertTrue(e.getMessage().contains(part), "message '" + e.getMessage() + "' should name '" + part + "'");
        }
        return e;
    }
}
