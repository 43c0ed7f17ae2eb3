package org.sparse24.examples;

import java.awt.BasicStroke;
import java.awt.Color;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.IntPredicate;

import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.lines.SeriesLines;
import org.knowm.xchart.style.markers.SeriesMarkers;

/**
 * {@code GptTrain --report OUTDIR RUN.csv...}: PNG plots and a markdown summary of training runs' CSVs
 * ({@link StepCsv}); the first run is the baseline the others are compared with. A run is named after its file
 * ({@code dense.csv} is "dense"). Writes to OUTDIR:
 * <ul>
 *   <li>{@code loss.png} train loss (moving average of 25 steps) and held-out loss of every run;
 *       {@code heldout.png} the held-out loss alone</li>
 *   <li>{@code sparsity-RUN.png} activation sparsity of each layer over the steps</li>
 *   <li>{@code drop.png} share of non-zeros dropped by the forward's 2:4 and by the backward's token-wise 2:4
 *       (dW2, dW1), mean over the layers</li>
 *   <li>{@code time.png} step time and FFN time (forward + backward, all layers) over the steps</li>
 *   <li>{@code summary.md} the numbers: final losses, sparsity, drop rates, median times and ratios</li>
 * </ul>
 */
final class Report {
    private static final int SMOOTH = 25;
    private static final int TIMING_FROM = 10; // the first steps include plan creation and algorithm search
    /** One colour per run (in order), one line style per quantity. */
    private static final Color[] COLORS = {new Color(0x1f77b4), new Color(0xd62728), new Color(0x2ca02c),
            new Color(0xff7f0e), new Color(0x9467bd), new Color(0x8c564b), new Color(0xe377c2), new Color(0x7f7f7f),
            new Color(0xbcbd22), new Color(0x17becf)};
    private static final BasicStroke SOLID = SeriesLines.SOLID;
    private static final BasicStroke DASHED = SeriesLines.DASH_DASH;
    private static final BasicStroke DOTTED = SeriesLines.DOT_DOT;

    private Report() {
    }

    /** One run's CSV: columns by name. */
    record Run(String name, Map<String, double[]> columns, int layers) {
        double[] col(String name) {
            double[] c = columns.get(name);
            if (c == null) {
                throw new IllegalArgumentException(this.name + ": no column " + name);
            }
            return c;
        }

        int rows() {
            return col("step").length;
        }

        double[] layerCol(String prefix, int layer) {
            return col(prefix + "_" + layer);
        }
    }

    static void main(String[] args) throws IOException {
        if (args.length < 2) {
            throw new IllegalArgumentException("--report OUTDIR RUN.csv... (at least one CSV)");
        }
        System.setProperty("java.awt.headless", "true");
        Path out = Path.of(args[0]);
        Files.createDirectories(out);
        List<Run> runs = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            runs.add(read(Path.of(args[i])));
        }
        lossCharts(runs, out);
        for (Run r : runs) {
            sparsityChart(r, out);
        }
        dropChart(runs, out);
        timeChart(runs, out);
        String md = summary(runs);
        Files.writeString(out.resolve("summary.md"), md, StandardCharsets.UTF_8);
        System.out.print(md);
        System.out.println("Report: wrote " + out.toAbsolutePath() + "/{loss,heldout,drop,time}.png, sparsity-*.png, "
                + "summary.md");
    }

    static Run read(Path csv) throws IOException {
        List<String> lines = Files.readAllLines(csv, StandardCharsets.UTF_8);
        if (lines.size() < 2) {
            throw new IllegalArgumentException(csv + ": no rows");
        }
        String[] header = lines.get(0).split(",", -1);
        Map<String, double[]> columns = new HashMap<>();
        for (String h : header) {
            columns.put(h, new double[lines.size() - 1]);
        }
        for (int r = 1; r < lines.size(); r++) {
            String[] cells = lines.get(r).split(",", -1);
            if (cells.length != header.length) {
                throw new IllegalArgumentException(csv + " line " + (r + 1) + ": " + cells.length + " cells, the "
                        + "header has " + header.length);
            }
            for (int i = 0; i < header.length; i++) {
                columns.get(header[i])[r - 1] = cells[i].isEmpty() ? Double.NaN : Double.parseDouble(cells[i]);
            }
        }
        int layers = 0;
        while (columns.containsKey("act_sparsity_" + layers)) {
            layers++;
        }
        String name = csv.getFileName().toString().replaceFirst("\\.csv$", "");
        return new Run(name, columns, layers);
    }

    private static void lossCharts(List<Run> runs, Path out) throws IOException {
        XYChart all = chart("Loss (train: moving average of " + SMOOTH + " steps; held-out: fixed batches)",
                "loss (nats/byte)");
        XYChart held = chart("Held-out loss", "loss (nats/byte)");
        for (int k = 0; k < runs.size(); k++) {
            Run r = runs.get(k);
            double[] steps = r.col("step");
            line(all, r.name + " train", steps, movingAverage(r.col("train_loss"), SMOOTH), i -> true, k, SOLID);
            double[] h = r.col("heldout_loss");
            line(all, r.name + " held-out", steps, h, i -> !Double.isNaN(h[i]), k, DASHED);
            line(held, r.name, steps, h, i -> !Double.isNaN(h[i]), k, SOLID);
        }
        save(all, out, "loss");
        save(held, out, "heldout");
    }

    private static void sparsityChart(Run r, Path out) throws IOException {
        if (r.layers == 0) {
            return;
        }
        XYChart c = chart("Activation sparsity per layer: " + r.name, "share of zeros of relu(H)^2");
        double[] measured = r.col("measured");
        for (int l = 0; l < r.layers; l++) {
            double[] s = r.layerCol("act_sparsity", l);
            line(c, "layer " + l, r.col("step"), s, i -> measured[i] == 1 && !Double.isNaN(s[i]), l, SOLID);
        }
        save(c, out, "sparsity-" + r.name);
    }

    private static void dropChart(List<Run> runs, Path out) throws IOException {
        XYChart c = chart("Dropped by 2:4, mean over layers: forward (solid), backward dW2 / dW1 (dashed / dotted)",
                "share of non-zeros dropped");
        for (int k = 0; k < runs.size(); k++) {
            Run r = runs.get(k);
            double[] sparse = r.col("ffn_sparse");
            double[] measured = r.col("measured");
            IntPredicate on = i -> measured[i] == 1 && sparse[i] == 1;
            line(c, r.name + " forward 2:4", r.col("step"), layerMean(r, "fwd_drop"), on, k, SOLID);
            line(c, r.name + " backward dW2", r.col("step"), layerMean(r, "dw2_drop"), on, k, DASHED);
            line(c, r.name + " backward dW1", r.col("step"), layerMean(r, "dw1_drop"), on, k, DOTTED);
        }
        save(c, out, "drop");
    }

    private static void timeChart(List<Run> runs, Path out) throws IOException {
        XYChart c = chart("Step (solid) and FFN (dashed) time, events, moving average of " + SMOOTH + " steps", "ms");
        for (int k = 0; k < runs.size(); k++) {
            Run r = runs.get(k);
            double[] measured = r.col("measured");
            double[] steps = r.col("step");
            IntPredicate timed = i -> measured[i] == 0 && steps[i] >= TIMING_FROM;
            line(c, r.name + " step", steps, movingAverage(select(r.col("step_ms"), timed), SMOOTH), timed, k, SOLID);
            line(c, r.name + " FFN", steps, movingAverage(select(ffnMs(r), timed), SMOOTH), timed, k, DASHED);
        }
        save(c, out, "time");
    }

    /** The markdown summary. */
    static String summary(List<Run> runs) {
        StringBuilder s = new StringBuilder();
        Run base = runs.get(0);
        double baseHeld = lastValue(base.col("heldout_loss"));
        double baseStep = medianTime(base, base.col("step_ms"));
        double baseFfn = medianTime(base, ffnMs(base));
        s.append("| run | steps | train loss (last ").append(SMOOTH).append(") | held-out loss | vs ")
                .append(base.name).append(" | activation sparsity (min / mean over layers) | forward 2:4 dropped "
                        + "| backward 2:4 dropped (dW2 / dW1) | step ms | FFN ms | step speed-up | FFN speed-up |\n");
        s.append("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (Run r : runs) {
            double held = lastValue(r.col("heldout_loss"));
            int last = lastMeasured(r);
            double stepMs = medianTime(r, r.col("step_ms"));
            double ffn = medianTime(r, ffnMs(r));
            s.append(String.format(Locale.ROOT, "| %s | %d | %.4f | %s | %s | %s | %s | %s | %s | %s | %s | %s |%n",
                    r.name, r.rows(), tailMean(r.col("train_loss"), SMOOTH), num("%.4f", held),
                    num("%+.2f%%", 100 * (held / baseHeld - 1)), last < 0 ? "-" : String.format(Locale.ROOT,
                            "%.3f / %.3f", layerMin(r, "act_sparsity", last), layerMean(r, "act_sparsity")[last]),
                    last < 0 ? "-" : num("%.2f%%", 100 * layerMean(r, "fwd_drop")[last]),
                    last < 0 ? "-" : num("%.2f%%", 100 * layerMean(r, "dw2_drop")[last]) + " / "
                            + num("%.2f%%", 100 * layerMean(r, "dw1_drop")[last]),
                    num("%.2f", stepMs), num("%.2f", ffn), num("%.3fx", baseStep / stepMs), num("%.3fx", baseFfn / ffn)));
        }
        s.append("\nActivation sparsity per layer at the last measured step:\n\n| run |");
        int layers = runs.stream().mapToInt(Run::layers).max().orElse(0);
        for (int l = 0; l < layers; l++) {
            s.append(" layer ").append(l).append(" |");
        }
        s.append("\n|---|").append("---|".repeat(layers)).append('\n');
        for (Run r : runs) {
            int last = lastMeasured(r);
            s.append("| ").append(r.name).append(" |");
            for (int l = 0; l < layers; l++) {
                s.append(last < 0 || l >= r.layers ? " - |"
                        : String.format(Locale.ROOT, " %.3f |", r.layerCol("act_sparsity", l)[last]));
            }
            s.append('\n');
        }
        s.append("\nTimes are medians over the steps from ").append(TIMING_FROM).append(" on that were not measured "
                + "(measured steps synchronize inside the backward), over the 2:4 steps only where a run has any; "
                + "speed-up = ").append(base.name).append("'s median / the run's.\n");
        return s.toString();
    }

    /** The value formatted, or "-" when it is NaN (not measured). */
    private static String num(String format, double v) {
        return Double.isNaN(v) ? "-" : String.format(Locale.ROOT, format, v);
    }

    private static double[] ffnMs(Run r) {
        double[] f = r.col("ffn_fwd_ms");
        double[] b = r.col("ffn_bwd_ms");
        double[] sum = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            sum[i] = f[i] + b[i];
        }
        return sum;
    }

    /** Median over timed steps (unmeasured, from TIMING_FROM), 2:4 steps only if the run has any. */
    private static double medianTime(Run r, double[] values) {
        double[] measured = r.col("measured");
        double[] sparse = r.col("ffn_sparse");
        double[] steps = r.col("step");
        boolean anySparse = false;
        for (double v : sparse) {
            anySparse |= v == 1;
        }
        List<Double> v = new ArrayList<>();
        for (int i = 0; i < values.length; i++) {
            if (measured[i] == 0 && steps[i] >= TIMING_FROM && (!anySparse || sparse[i] == 1)
                    && !Double.isNaN(values[i])) {
                v.add(values[i]);
            }
        }
        return GptTrain.median(v);
    }

    private static int lastMeasured(Run r) {
        double[] measured = r.col("measured");
        for (int i = measured.length - 1; i >= 0; i--) {
            if (measured[i] == 1 && r.layers > 0 && !Double.isNaN(r.layerCol("act_sparsity", 0)[i])) {
                return i;
            }
        }
        return -1;
    }

    private static double[] layerMean(Run r, String prefix) {
        double[] mean = new double[r.rows()];
        for (int l = 0; l < r.layers; l++) {
            double[] c = r.layerCol(prefix, l);
            for (int i = 0; i < mean.length; i++) {
                mean[i] += c[i] / r.layers;
            }
        }
        return mean;
    }

    private static double layerMin(Run r, String prefix, int row) {
        double min = Double.POSITIVE_INFINITY;
        for (int l = 0; l < r.layers; l++) {
            min = Math.min(min, r.layerCol(prefix, l)[row]);
        }
        return min;
    }

    private static double lastValue(double[] v) {
        for (int i = v.length - 1; i >= 0; i--) {
            if (!Double.isNaN(v[i])) {
                return v[i];
            }
        }
        return Double.NaN;
    }

    private static double tailMean(double[] v, int n) {
        double sum = 0;
        int count = 0;
        for (int i = Math.max(0, v.length - n); i < v.length; i++) {
            sum += v[i];
            count++;
        }
        return sum / count;
    }

    /** v where keep, NaN elsewhere. */
    private static double[] select(double[] v, IntPredicate keep) {
        double[] s = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            s[i] = keep.test(i) ? v[i] : Double.NaN;
        }
        return s;
    }

    /** Mean of the last n non-NaN values up to each index (NaN where the value itself is NaN). */
    static double[] movingAverage(double[] v, int n) {
        double[] out = new double[v.length];
        double[] window = new double[n];
        int count = 0;
        double sum = 0;
        for (int i = 0; i < v.length; i++) {
            if (Double.isNaN(v[i])) {
                out[i] = Double.NaN;
                continue;
            }
            if (count >= n) {
                sum -= window[count % n];
            }
            window[count % n] = v[i];
            sum += v[i];
            count++;
            out[i] = sum / Math.min(count, n);
        }
        return out;
    }

    private static XYChart chart(String title, String yTitle) {
        XYChart c = new XYChartBuilder().width(1000).height(560).title(title).xAxisTitle("step").yAxisTitle(yTitle)
                .build();
        c.getStyler().setMarkerSize(4);
        c.getStyler().setXAxisDecimalPattern("#");
        return c;
    }

    /** Adds the points i with keep(i) (nothing if there are none), in colour number {@code color}. */
    private static void line(XYChart c, String name, double[] x, double[] y, IntPredicate keep, int color,
                             BasicStroke style) {
        List<Double> xs = new ArrayList<>();
        List<Double> ys = new ArrayList<>();
        for (int i = 0; i < x.length; i++) {
            if (keep.test(i) && !Double.isNaN(y[i])) {
                xs.add(x[i]);
                ys.add(y[i]);
            }
        }
        if (xs.isEmpty()) {
            return;
        }
        XYSeries s = c.addSeries(name, xs, ys);
        s.setMarker(xs.size() > 60 ? SeriesMarkers.NONE : SeriesMarkers.CIRCLE);
        s.setLineColor(COLORS[color % COLORS.length]);
        s.setMarkerColor(COLORS[color % COLORS.length]);
        s.setLineStyle(style);
    }

    private static void save(XYChart c, Path out, String name) throws IOException {
        BitmapEncoder.saveBitmap(c, out.resolve(name + ".png").toString(), BitmapEncoder.BitmapFormat.PNG);
    }
}
