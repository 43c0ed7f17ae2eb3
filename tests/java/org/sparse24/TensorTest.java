package org.sparse24;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Tensors on the CPU backend: conversion, poisoning, borrowing, names, shapes. */
class TensorTest {
    private static Sparse24 ctx;

    @BeforeAll
    static void open() {
        ctx = Sparse24.cpu();
    }

    @AfterAll
    static void close() {
        ctx.close();
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FP32", "BF16", "FP16"})
    void floatsRoundTripThroughTheDtype(DType dtype) {
        float[] values = TestData.normal(new Random(3), 24, 100);
        try (Tensor t = Tensor.fromFloats(ctx, dtype, values, 2, 3, 4)) {
            assertArrayEquals(TestData.stored(dtype, values), t.toFloats());
            assertEquals(24, t.elementCount());
            assertEquals(24L * dtype.byteSize(), t.byteSize());
            assertEquals(3, t.rank());
            assertEquals(3, t.dim(1));
            t.copyFrom(new float[24]);
            assertArrayEquals(new float[24], t.toFloats());
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FP32", "BF16", "FP16"})
    void poisonSetsEveryByte(DType dtype) {
        try (Tensor t = Tensor.allocate(ctx, dtype, 5, 3)) {
            t.poison(0xFF);
            for (float v : t.toFloats()) {
                assertTrue(Float.isNaN(v));
            }
            t.poison(0);
            assertArrayEquals(new float[15], t.toFloats());
        }
    }

    @Test
    void integerTensorsRoundTripAndRefuseFloats() {
        int[] ints = {7, -1, 0, 1 << 30, 5, 6};
        try (Tensor i = Tensor.fromInts(ctx, ints, 2, 3);
             Tensor l = Tensor.allocate(ctx, DType.INT64, 4);
             Tensor b = Tensor.allocate(ctx, DType.UINT8, 3)) {
            assertArrayEquals(ints, i.toInts());
            assertEquals(24, i.byteSize());
            l.poison(0);
            assertArrayEquals(new long[4], l.toLongs());
            b.copyFrom(new byte[] {1, 0, (byte) 255});
            assertArrayEquals(new byte[] {1, 0, (byte) 255}, b.toBytes());
            MessageAssertions.assertThrowsNaming(IllegalArgumentException.class, i::toFloats, "INT32",
                    "expected a floating dtype");
            MessageAssertions.assertThrowsNaming(IllegalArgumentException.class, i::toLongs, "expected dtype INT64",
                    "got INT32");
            MessageAssertions.assertThrowsNaming(IllegalArgumentException.class, () -> i.copyFrom(new int[5]),
                    "expected 6 elements", "got 5");
            MessageAssertions.assertThrowsNaming(IllegalArgumentException.class,
                    () -> new SparseFfn(ctx, 8, 16, DType.INT32, SparseFfnOptions.defaults()), "dtype",
                    "floating dtype", "INT32");
        }
    }

    @Test
    void borrowedTensorsShareMemoryAndDoNotFreeIt() {
        float[] values = {1, 2, 3, 4, 5, 6};
        try (Tensor owner = Tensor.fromFloats(ctx, DType.FP32, values, 6)) {
            Tensor view = Tensor.borrow(ctx, owner.data(), DType.FP32, 2, 3);
            assertFalse(view.isOwned());
            assertTrue(owner.isOwned());
            assertArrayEquals(values, view.toFloats());
            view.copyFrom(new float[] {6, 5, 4, 3, 2, 1});
            assertArrayEquals(new float[] {6, 5, 4, 3, 2, 1}, owner.toFloats());
            view.close();
            assertArrayEquals(new float[] {6, 5, 4, 3, 2, 1}, owner.toFloats(), "still usable");
        }
    }

    @Test
    void namesAppearInMessagesAndShapesAreCopies() {
        try (Tensor t = Tensor.allocate(ctx, DType.BF16, 2, 5).named("hidden")) {
            assertEquals("hidden", t.name());
            assertTrue(t.toString().contains("'hidden' BF16 [2, 5]"), t.toString());
            long[] shape = t.shape();
            shape[0] = 99;
            assertArrayEquals(new long[] {2, 5}, t.shape());
        }
    }
}
