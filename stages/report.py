"""report: the comparison report (reports/comparison.md) and the plot data, from this run's own numbers.

Every figure comes from files the pipeline wrote in this run: the candidates' and the fine-tuned baseline's
metrics from evaluate (the report never rescores), their test predictions (for intervals and plots), the embed
meta, probe fit and finetune (DVCLive) files. Uncertainty is a seeded bootstrap over test articles.
"""
import argparse
import csv
from pathlib import Path

import numpy as np

from common import latency, load_params, load_schema, load_split, read_json, run_main
from embedders import load_embedder, model_input
from evaluate import adapter_dir, candidates, load_predictions
from score import Scorer

LATENCY_ARTICLES = 32
# The reference study's reading of the gap between the best probe and the fine-tuned model (its thresholds are
# for a positive gap; a negative one means the probe scored better than the adapter on this split).
GAP_VERDICTS = ((0.0, "the probe's MAE is below the fine-tuned baseline's"),
                (0.1, "embeddings nearly match fine-tuning"),
                (0.2, "embeddings give a partial improvement; fine-tuning keeps an edge"),
                (float("inf"), "fine-tuning is recommended"))


def name(candidate):
    return f"{candidate[0]} / {candidate[1]}"


def bootstrap(errors, candidates_, best, baseline_errors, resamples, seed):
    """95% intervals: each candidate's MAE, its gap to the baseline, and its paired difference to the best.

    errors[c] and baseline_errors hold one absolute error per test article (mean over dimensions); every
    resample draws the same articles for all candidates and the baseline, so the gap and the differences
    between candidates are paired.
    """
    n = len(next(iter(errors.values())))
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    intervals = {}
    for c in candidates_:
        mae = errors[c][draws].mean(axis=1)
        to_best = (errors[c] - errors[best])[draws].mean(axis=1)
        intervals[c] = {"mae": np.percentile(mae, [2.5, 97.5]),
                        "gap": np.percentile((errors[c] - baseline_errors)[draws].mean(axis=1), [2.5, 97.5]),
                        "to_best": np.percentile(to_best, [2.5, 97.5])}
    return intervals


def rho(value):
    """A Spearman coefficient; evaluate writes null where it is undefined (a constant prediction)."""
    return "undefined" if value is None else f"{value:.3f}"


def fmt_interval(pair, digits=3):
    return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(x) for x in row) + " |" for row in rows])


def verdict(gap):
    return next(text for limit, text in GAP_VERDICTS if gap < limit)


def recommendations(results, order, dimensions, errors, truth, preds, params, embed_meta):
    """Advice that follows from this run's numbers, not fixed text."""
    best = order[0]
    per_dim = results[best]["per_dimension"]
    hardest = max(dimensions, key=lambda d: per_dim[d]["mae"])
    easiest = min(dimensions, key=lambda d: per_dim[d]["mae"])
    lines = [f"- Hardest dimension for the best candidate: **{hardest}** (MAE {per_dim[hardest]['mae']:.3f}, "
             f"Spearman {rho(per_dim[hardest]['spearman'])}); easiest: {easiest} (MAE {per_dim[easiest]['mae']:.3f})."]
    if len(order) > 1:
        second = order[1]
        blend = np.clip((preds[best] + preds[second]) / 2, *params["_range"])
        blend_mae = float(np.abs(blend - truth).mean())
        better = blend_mae < results[best]["mae"]
        lines.append(f"- Averaging the two best candidates ({name(best)} and {name(second)}) gives MAE "
                     f"{blend_mae:.3f} against {results[best]['mae']:.3f} for the best alone "
                     f"({blend_mae - results[best]['mae']:+.3f}): an ensemble is "
                     + ("worth trying." if better else "not worth it on this split."))
    dims = {m: embed_meta[m]["dimension"] for m in {c[0] for c in order}}
    largest = max(dims.values())
    if len(dims) == 1 or dims[best[0]] == largest:
        others = [k for k in params["embedders"] if k not in dims][:3]
        lines.append(f"- The best embedding ({best[0]}, {dims[best[0]]}-d) is the largest in this grid: a larger "
                     f"model ({', '.join(others) or 'another registry entry'}) is the next thing to try.")
    else:
        lines.append(f"- The best embedding ({best[0]}, {dims[best[0]]}-d) beats a larger one ({largest}-d): "
                     f"model size is not the bottleneck here.")
    share = np.mean([embed_meta[m]["truncated_share"] for m in dims])
    if share > 0.5:
        lines.append(f"- {share:.0%} of the texts are longer than the embedders' token limit: a longer "
                     f"`max_tokens` or head+tail truncation may recover information.")
    return lines


def write_plots(plots_dir, results, order, tuned, dimensions, truth, preds, errors, probes_dir):
    """CSV data of the charts declared in dvc.yaml; `order` are the candidates best first, `tuned` the baseline's
    key (in the per-dimension and error charts beside them)."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)

    def write_csv(file, header, rows):
        with open(plots_dir / file, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    write_csv("per_dimension_mae.csv", ["candidate_dimension", "mae"],
              [(f"{name(c)} · {d}", round(results[c]["per_dimension"][d]["mae"], 4)) for c in [*order, tuned]
               for d in dimensions])
    write_csv("gap.csv", ["candidate", "gap"], [(name(c), round(results[c]["gap"], 4)) for c in order])
    best = order[0]
    write_csv("predicted_vs_actual.csv", ["actual", "predicted"],
              [(round(a, 2), round(p, 3)) for a, p in zip(truth.ravel(), preds[best].ravel())])
    write_csv("abs_error.csv", ["candidate", "abs_error"],
              [(name(c), round(e, 4)) for c in [*order, tuned] for e in errors[c]])
    curves = []
    for model, probe in order:
        history = Path(probes_dir) / model / probe / "history.json"
        if probe == "mlp" and history.is_file():
            curves += [(model, h["epoch"], round(h["train_mae"], 4), round(h["val_mae"], 4))
                       for h in read_json(history)]
    write_csv("mlp_training.csv", ["model", "epoch", "train_mae", "val_mae"], curves)
    return plots_dir


def write_pngs(plots_dir, results, order, tuned, dimensions, truth, preds, errors, probes_dir, live_dir):
    """Static images of the charts: readable offline, where the HTML of `dvc plots show` needs a CDN."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    png_dir = Path(plots_dir) / "png"
    png_dir.mkdir(parents=True, exist_ok=True)
    labels = [name(c) for c in order]
    bars = [*order, tuned]

    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(dimensions) * len(bars)))
    width = 0.8 / len(bars)
    for i, c in enumerate(bars):
        ax.barh(np.arange(len(dimensions)) + i * width, [results[c]["per_dimension"][d]["mae"] for d in dimensions],
                height=width, label=name(c))
    ax.set_yticks(np.arange(len(dimensions)) + 0.4 - width / 2, dimensions)
    ax.set_xlabel("MAE")
    ax.legend(fontsize=7)
    ax.set_title("Per-dimension MAE")
    fig.tight_layout()
    fig.savefig(png_dir / "per_dimension_mae.png", dpi=90)

    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.4 * len(order)))
    ax.barh(labels, [results[c]["gap"] for c in order])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("MAE gap to the baseline")
    ax.set_title("Gap vs baseline")
    fig.tight_layout()
    fig.savefig(png_dir / "gap.png", dpi=90)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(truth.ravel(), preds[order[0]].ravel(), s=6, alpha=0.4)
    lo, hi = float(truth.min()), float(truth.max())
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(f"Predicted vs actual: {labels[0]}")
    fig.tight_layout()
    fig.savefig(png_dir / "predicted_vs_actual.png", dpi=90)

    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.5 * len(bars)))
    ax.boxplot([errors[c] for c in bars], orientation="horizontal", tick_labels=[name(c) for c in bars])
    ax.set_xlabel("absolute error per article (mean over dimensions)")
    ax.set_title("Error distribution")
    fig.tight_layout()
    fig.savefig(png_dir / "abs_error.png", dpi=90)

    curves = [(c, read_json(Path(probes_dir) / c[0] / c[1] / "history.json")) for c in order
              if (Path(probes_dir) / c[0] / c[1] / "history.json").is_file()]
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4))
        for c, history in curves:
            epochs = [h["epoch"] for h in history]
            ax.plot(epochs, [h["train_mae"] for h in history], label=f"{c[0]} train")
            ax.plot(epochs, [h["val_mae"] for h in history], linestyle="--", label=f"{c[0]} validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("MAE")
        ax.legend(fontsize=7)
        ax.set_title("MLP training curves")
        fig.tight_layout()
        fig.savefig(png_dir / "mlp_training.png", dpi=90)

    # Two panels: the loss is in standardised units, the validation MAE in score points.
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss = np.loadtxt(Path(live_dir) / "plots/metrics/train/loss.tsv", delimiter="\t", skiprows=1, ndmin=2)
    left.plot(loss[:, 0], loss[:, 1])
    left.set_xlabel("optimiser step")
    left.set_title("training loss (MSE, standardised targets)", fontsize=9)
    val = np.loadtxt(Path(live_dir) / "plots/metrics/val/mae.tsv", delimiter="\t", skiprows=1, ndmin=2)
    right.plot(val[:, 0], val[:, 1], marker="o")
    right.set_xlabel("optimiser step")
    right.set_title("validation MAE", fontsize=9)
    fig.suptitle(f"Fine-tuning curves: {tuned[1]}")
    fig.tight_layout()
    fig.savefig(png_dir / "finetune_training.png", dpi=90)
    plt.close("all")


def report(prepared, embeddings_dir, probes_dir, adapters_dir, metrics_dir, baseline_path, finetune_metrics,
           embed_meta_dir, fit_dir, data_metrics, out, plots_dir, params):
    cfg = params.get("report") or {}
    schema = load_schema(prepared)
    dimensions = schema["dimensions"]
    test = load_split(prepared, "test")
    truth = np.array([r["labels"] for r in test])
    ids = [r["id"] for r in test]
    baseline, tuning = read_json(baseline_path), read_json(finetune_metrics)
    tuned = ("fine-tuned", baseline["profile"])       # the baseline, as a row beside the candidates
    cands = candidates(params)
    preds = {c: load_predictions(Path(probes_dir) / c[0] / c[1] / "test_predictions.npz", ids) for c in cands}
    preds[tuned] = load_predictions(adapter_dir(adapters_dir, params) / "test_predictions.npz", ids)
    results = {c: read_json(Path(metrics_dir) / c[0] / f"{c[1]}.json") for c in cands}
    results[tuned] = {**baseline, "gap": 0.0}
    errors = {c: np.abs(preds[c] - truth).mean(axis=1) for c in preds}
    order = sorted(cands, key=lambda c: results[c]["mae"])
    best = order[0]
    ci = bootstrap(errors, [*cands, tuned], best, errors[tuned], int(cfg.get("bootstrap_resamples", 1000)),
                   int(params["seed"]))
    embed_meta = {m: read_json(Path(embed_meta_dir) / f"{m}.json") for m in dict.fromkeys(c[0] for c in cands)}
    fits = {m: read_json(Path(fit_dir) / f"{m}.json") for m in embed_meta}
    splits = read_json(data_metrics)
    params = {**params, "_range": schema["score_range"]}

    lines = [
        "# Embedding probes vs fine-tuning: comparison report",
        "",
        f"- Dataset: `{params['data']['raw']}`, {sum(splits[s]['count'] for s in ('train', 'val', 'test'))} "
        f"records, {len(dimensions)} dimensions, score range {schema['score_range']}",
        f"- Splits: train {splits['train']['count']}, validation {splits['val']['count']}, "
        f"test {splits['test']['count']} (seed {params['seed']})",
        f"- Baseline: the fine-tuned adapter `{baseline['adapter']}` (profile `{baseline['profile']}`: LoRA on "
        f"`{baseline['base']}`), MAE {baseline['mae']:.3f} measured on this test split ({baseline['n_test']} "
        f"articles) by the same evaluation code. The study's reference value {baseline['reference_mae']:.2f} "
        f"({baseline['reference_source']}) is shown beside it and enters no gap.",
        "- Embedders: " + "; ".join(
            f"{m} ({meta['dimension']}-d, {meta.get('dtype', '?')} on {meta.get('device', '?')}, "
            f"{meta['max_tokens']} tokens, {meta['truncated_share']:.0%} of texts truncated)"
            for m, meta in embed_meta.items()),
        f"- Intervals: 95% bootstrap over test articles ({int(cfg.get('bootstrap_resamples', 1000))} resamples, "
        f"seed {params['seed']}); differences to the best candidate are paired.",
        "",
        "## Summary (sorted by MAE)",
        "",
    ]
    rows = []
    for c in order:
        r, bold = results[c], (lambda s: f"**{s}**") if c == best else (lambda s: s)
        rows.append([bold(c[0]), bold(c[1]), bold(f"{r['mae']:.3f}"), fmt_interval(ci[c]["mae"]),
                     f"{r['rmse']:.3f}", rho(r['spearman']), f"{r['gap']:+.3f}",
                     f"{100 * r['gap'] / baseline['mae']:+.1f}%", fmt_interval(ci[c]["gap"]),
                     "—" if c == best else fmt_interval(ci[c]["to_best"])])
    lines += [table(["model", "probe", "MAE", "MAE 95% CI", "RMSE", "Spearman", "gap", "gap %", "gap 95% CI",
                     "vs best 95% CI"], rows), "",
              "## Baseline", "",
              table(["baseline", "split", "MAE", "MAE 95% CI", "RMSE", "Spearman", "best probe vs it 95% CI"],
                    [[f"fine-tuned: {baseline['profile']} (LoRA on `{baseline['base']}`)", "test (measured)",
                      f"{baseline['mae']:.3f}", fmt_interval(ci[tuned]["mae"]), f"{baseline['rmse']:.3f}",
                      rho(baseline['spearman']), fmt_interval(ci[best]["gap"])],
                     ["the study's reference value", "its own validation run", f"{baseline['reference_mae']:.3f}",
                      "—", "—", "—", "—"]]), ""]

    def best_of(probe_names):
        chosen = [c for c in order if c[1] in probe_names]
        return f"{name(chosen[0])} (MAE {results[chosen[0]]['mae']:.3f})" if chosen else "not in this grid"

    gap = results[best]["gap"]
    tied = [name(c) for c in order[1:] if ci[c]["to_best"][0] <= 0]
    lines += ["## Best candidates", "",
              f"- Best linear probe: {best_of({'ridge'})}",
              f"- Best MLP probe: {best_of({'mlp'})}",
              f"- Best overall: **{name(best)}** (MAE {results[best]['mae']:.3f}, gap {gap:+.3f})",
              f"- Not distinguishable from the best on this split (paired interval includes 0): "
              f"{', '.join(tied) if tied else 'none'}",
              "",
              f"**Result:** the best gap to the measured baseline is {gap:+.3f} MAE: {verdict(gap)}"
              + (f"; its 95% interval {fmt_interval(ci[best]['gap'])} includes 0, so on this split the two are not "
                 f"distinguishable" if ci[best]["gap"][0] <= 0 <= ci[best]["gap"][1] else "")
              + f". Against the study's reference value the same probe's gap would read "
              f"{results[best]['mae'] - baseline['reference_mae']:+.3f}.", "", "## Recommendations", ""]
    lines += recommendations(results, order, dimensions, errors, truth, preds, params, embed_meta)
    lines += ["", "## Per-dimension results (top 3 and the baseline)", ""]
    for c in [*order[:3], tuned]:
        per = results[c]["per_dimension"]
        lines += [f"### {name(c)}", "", table(["dimension", "MAE", "RMSE", "Spearman"],
                  [[d, f"{per[d]['mae']:.3f}", f"{per[d]['rmse']:.3f}", rho(per[d]['spearman'])]
                   for d in dimensions]), ""]

    lines += ["## Efficiency (measured in this run)", "",
              "Embedding time is the embed stage's; scoring latency is `stages/score.py`'s path (embedder + probe) "
              f"on {min(len(test), LATENCY_ARTICLES)} test articles, one at a time and in one batch.", ""]
    eff = []
    texts = [model_input(r) for r in test[:LATENCY_ARTICLES]]
    for model in dict.fromkeys(c[0] for c in order):
        meta = embed_meta[model]
        X = np.load(Path(embeddings_dir) / model / "test.npy")
        embedder = load_embedder(read_json(Path(probes_dir) / model / "scoring.json")["embedder"])
        for probe in [c[1] for c in order if c[0] == model]:
            scorer = Scorer(Path(probes_dir) / model / probe, embedder=embedder)
            alone = latency(scorer.probe.predict, X, repeats=50)
            scoring = latency(scorer.predict, texts)
            eff.append([model, probe, f"{meta.get('dtype', '?')} on {meta.get('device', '?')}",
                        f"{1000 * meta['seconds'] / meta['texts']:.1f} s", f"{meta.get('tokens_per_second', 0):,.0f}",
                        f"{fits[model][probe]['fit_seconds']:.2f} s", f"{1000 * alone['single']:.3f} ms",
                        f"{1000 * alone['batched']:.4f} ms", f"{1000 * scoring['single']:.1f} ms",
                        f"{1000 * scoring['batched']:.1f} ms"])
    lines += [table(["model", "probe", "embedder precision", "embedding / 1,000 articles", "tokens / s",
                     "probe training", "probe alone, 1 article", "probe alone, batched (per article)",
                     "scoring, 1 article", "scoring, batched (per article)"], eff), "",
              f"Fine-tuning (the finetune stage, profile `{tuning['profile']}`), measured in its run:", "",
              table(["baseline", "precision", "trainable parameters", "steps", "training", "per step",
                     "peak memory", "scoring, 1 article", "scoring, batched (per article)"],
                    [[f"fine-tuned: {tuning['profile']}",
                      f"{tuning['dtype']}{' mixed' if tuning['dtype'] != 'float32' else ''} on {tuning['device']}",
                      f"{tuning['trainable_parameters']:,}", tuning["steps"], f"{tuning['fit_seconds']:.0f} s",
                      f"{tuning['seconds_per_step']:.2f} s", f"{tuning['peak_rss_mb']:,.0f} MB RSS",
                      f"{tuning['latency_ms']['single']:.1f} ms", f"{tuning['latency_ms']['batched']:.1f} ms"]]), ""]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines), encoding="utf-8")
    write_plots(plots_dir, results, order, tuned, dimensions, truth, preds, errors, probes_dir)
    write_pngs(plots_dir, results, order, tuned, dimensions, truth, preds, errors, probes_dir,
               Path(finetune_metrics).parent)
    return results, ci


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--embeddings", required=True, help="directory holding <model>/test.npy")
    parser.add_argument("--probes", required=True, help="directory holding <model>/<probe>/ from probe")
    parser.add_argument("--adapters", required=True, help="directory holding <profile>/ from finetune")
    parser.add_argument("--metrics-dir", required=True, help="directory holding <model>/<probe>.json from evaluate")
    parser.add_argument("--baseline", required=True, help="the baseline's metrics from evaluate")
    parser.add_argument("--finetune-metrics", required=True, help="metrics.json of finetune's DVCLive directory")
    parser.add_argument("--embed-meta", required=True, help="directory holding <model>.json from embed")
    parser.add_argument("--fit-metrics", required=True, help="directory holding <model>.json from probe")
    parser.add_argument("--data-metrics", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--plots", required=True)
    args = parser.parse_args()
    report(args.prepared, args.embeddings, args.probes, args.adapters, args.metrics_dir, args.baseline,
           args.finetune_metrics, args.embed_meta, args.fit_metrics, args.data_metrics, args.out, args.plots,
           load_params(args.params))


if __name__ == "__main__":
    run_main(main)
