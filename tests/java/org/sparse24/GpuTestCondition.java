package org.sparse24;

import java.lang.reflect.Method;
import java.util.Arrays;

import org.junit.jupiter.api.extension.ConditionEvaluationResult;
import org.junit.jupiter.api.extension.ExecutionCondition;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Decides, per test class tagged {@code gpu}, whether it runs (registered for every test through
 * META-INF/services; Maven's surefire turns the auto-detection on). A plain {@code mvn test} skips them, saying so
 * and how many; {@code mvn test -Pgpu} (system property {@code sparse24.gpuTests=true}) runs them where CUDA
 * device 0 is usable, and otherwise skips each with the one reason CUDA is not usable.
 */
public final class GpuTestCondition implements ExecutionCondition {
    private static String cudaUnavailable;  // null until probed; "" when CUDA is usable

    @Override
    public ConditionEvaluationResult evaluateExecutionCondition(ExtensionContext context) {
        if (context.getTestMethod().isPresent() || context.getTestClass().isEmpty()
                || !context.getTags().contains("gpu")) {
            return ConditionEvaluationResult.enabled("not a GPU test class");
        }
        String name = context.getTestClass().get().getSimpleName();
        String reason;
        if (!Boolean.getBoolean("sparse24.gpuTests")) {
            reason = "GPU test excluded from this run (mvn test -Pgpu runs the GPU tests)";
        } else {
            String why = probeCuda();
            if (why.isEmpty()) {
                return ConditionEvaluationResult.enabled("CUDA device 0 is usable");
            }
            reason = "no usable CUDA device: " + why;
        }
        long methods = testMethods(context.getTestClass().get());
        System.out.printf("sparse24: skipped %s (%d test method%s): %s%n", name, methods, methods == 1 ? "" : "s",
                reason);
        return ConditionEvaluationResult.disabled(reason);
    }

    private static synchronized String probeCuda() {
        if (cudaUnavailable == null) {
            try (Sparse24 ctx = Sparse24.cuda(0)) {
                cudaUnavailable = "";
            } catch (RuntimeException e) {
                cudaUnavailable = e.getMessage();
            }
        }
        return cudaUnavailable;
    }

    private static long testMethods(Class<?> type) {
        long n = 0;
        for (Class<?> c = type; c != null && c != Object.class; c = c.getSuperclass()) {
            n += Arrays.stream(c.getDeclaredMethods()).filter(GpuTestCondition::isTest).count();
        }
        return n;
    }

    private static boolean isTest(Method m) {
        return Arrays.stream(m.getAnnotations()).anyMatch(a -> {
            String n = a.annotationType().getName();
            return n.equals("org.junit.jupiter.api.Test") || n.equals("org.junit.jupiter.params.ParameterizedTest")
                    || n.equals("org.junit.jupiter.api.RepeatedTest") || n.equals("org.junit.jupiter.api.TestFactory");
        });
    }
}
