package org.sparse24.examples;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * The per-step CSV of a run. Columns: {@link #FIXED}, then per layer i {@code act_sparsity_i}, {@code fwd_drop_i},
 * {@code dw2_drop_i}, {@code dw1_drop_i} (empty on steps that were not measured; {@code heldout_loss} is empty
 * between evaluations).
 */
final class StepCsv implements AutoCloseable {
    static final List<String> FIXED = List.of("step", "lr", "ffn_sparse", "train_loss", "heldout_loss", "grad_norm",
            "step_ms", "wall_ms", "ffn_fwd_ms", "ffn_bwd_ms", "measured");
    static final List<String> PER_LAYER = List.of("act_sparsity", "fwd_drop", "dw2_drop", "dw1_drop");

    private final PrintWriter out;
    private final int layers;

    StepCsv(Path file, int layers) throws IOException {
        Path parent = file.toAbsolutePath().getParent();
        if (parent != null) {
            Files.createDirectories(parent);
        }
        this.out = new PrintWriter(Files.newBufferedWriter(file, StandardCharsets.UTF_8));
        this.layers = layers;
        StringBuilder header = new StringBuilder(String.join(",", FIXED));
        for (String column : PER_LAYER) {
            for (int i = 0; i < layers; i++) {
                header.append(',').append(column).append('_').append(i);
            }
        }
        out.println(header);
    }

    /** One row; {@code heldOut} NaN when not evaluated, {@code stats} null when not measured. */
    void row(int step, double lr, boolean sparse, double train, double heldOut, double gradNorm, double stepMs,
             double wallMs, float[] ffnMs, List<Ffn.Stats> stats) {
        StringBuilder r = new StringBuilder();
        r.append(step).append(',').append(fmt(lr)).append(',').append(sparse ? 1 : 0).append(',').append(fmt(train))
                .append(',').append(fmt(heldOut)).append(',').append(fmt(gradNorm)).append(',').append(fmt(stepMs))
                .append(',').append(fmt(wallMs)).append(',').append(fmt(ffnMs[0])).append(',').append(fmt(ffnMs[1]))
                .append(',').append(stats == null ? 0 : 1);
        for (int column = 0; column < PER_LAYER.size(); column++) {
            for (int i = 0; i < layers; i++) {
                r.append(',');
                if (stats != null) {
                    Ffn.Stats s = stats.get(i);
                    r.append(fmt(switch (column) {
                        case 0 -> s.activationSparsity();
                        case 1 -> s.forwardDrop();
                        case 2 -> s.dw2Drop();
                        default -> s.dw1Drop();
                    }));
                }
            }
        }
        out.println(r);
    }

    private static String fmt(double v) {
        return Double.isNaN(v) ? "" : String.format(Locale.ROOT, "%.6g", v);
    }

    @Override
    public void close() {
        out.close();
    }
}
