"""The report's charts: CSV data of the plots declared in dvc.yaml (drawn by `dvc plots show/diff`) and static PNGs
of the same charts (readable offline, where the HTML of `dvc plots show` needs a CDN)."""
import csv
from pathlib import Path

import numpy as np

from news_probes.artifacts import probe_dir, read_history

# The finetune stage's DVCLive curves, under its live directory (declared as plots in dvc.yaml too).
LIVE_LOSS = "plots/metrics/train/loss.tsv"
LIVE_VAL_MAE = "plots/metrics/val/mae.tsv"


def name(candidate):
    return f"{candidate[0]} / {candidate[1]}"


def unpack(run):
    """The run's pieces the charts use; `rows` are the candidates and, where one was measured, the baseline."""
    rows = [*run["order"], *([run["tuned"]] if run["tuned"] else [])]
    return (run["results"], run["order"], run["best"], rows, run["dimensions"], run["truth"], run["preds"],
            run["errors"])


def write_plots(plots_dir, run, probes_dir):
    """CSV data of the charts declared in dvc.yaml. `run` is what the report stage read: `order` the candidates
    sorted by validation MAE, `best` evaluate's choice, the baseline a row beside the candidates where measured;
    the gap chart is empty without a baseline."""
    results, order, best, rows, dimensions, truth, preds, errors = unpack(run)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)

    def write_csv(file, header, rows):
        with open(plots_dir / file, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    write_csv("per_dimension_mae.csv", ["candidate_dimension", "mae"],
              [(f"{name(c)} · {d}", round(results[c]["per_dimension"][d]["mae"], 4)) for c in rows
               for d in dimensions])
    write_csv("gap.csv", ["candidate", "gap"],
              [(name(c), round(results[c]["gap"], 4)) for c in order if results[c]["gap"] is not None])
    write_csv("predicted_vs_actual.csv", ["actual", "predicted"],
              [(round(a, 2), round(p, 3)) for a, p in zip(truth.ravel(), preds[best].ravel())])
    write_csv("abs_error.csv", ["candidate", "abs_error"],
              [(name(c), round(e, 4)) for c in rows for e in errors[c]])
    curves = [(model, h["epoch"], round(h["train_mae"], 4), round(h["val_mae"], 4))
              for model, probe in order if probe == "mlp" for h in read_history(probe_dir(probes_dir, model, probe))]
    write_csv("mlp_training.csv", ["model", "epoch", "train_mae", "val_mae"], curves)
    return plots_dir


def write_pngs(plots_dir, run, probes_dir, live_dir):
    """Static images of the same charts, and the finetune stage's curves from its DVCLive directory; returns
    {stem: path} of the images written."""
    results, order, best, rows, dimensions, truth, preds, errors = unpack(run)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    png_dir = Path(plots_dir) / "png"
    png_dir.mkdir(parents=True, exist_ok=True)
    written = {}

    def save(fig, stem):
        fig.savefig(png_dir / f"{stem}.png", dpi=90)
        written[stem] = png_dir / f"{stem}.png"

    labels = [name(c) for c in order]
    bars = rows

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
    save(fig, "per_dimension_mae")

    if run["tuned"]:                       # a gap needs a measured baseline
        fig, ax = plt.subplots(figsize=(7, 0.8 + 0.4 * len(order)))
        ax.barh(labels, [results[c]["gap"] for c in order])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("MAE gap to the baseline")
        ax.set_title("Gap vs baseline")
        fig.tight_layout()
        save(fig, "gap")

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(truth.ravel(), preds[best].ravel(), s=6, alpha=0.4)
    lo, hi = float(truth.min()), float(truth.max())
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(f"Predicted vs actual: {name(best)}")
    fig.tight_layout()
    save(fig, "predicted_vs_actual")

    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.5 * len(bars)))
    ax.boxplot([errors[c] for c in bars], orientation="horizontal", tick_labels=[name(c) for c in bars])
    ax.set_xlabel("absolute error per article (mean over dimensions)")
    ax.set_title("Error distribution")
    fig.tight_layout()
    save(fig, "abs_error")

    curves = [(c, read_history(probe_dir(probes_dir, *c))) for c in order]
    curves = [(c, history) for c, history in curves if history]
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
        save(fig, "mlp_training")

    routing = (run.get("routing") or {}).get("routing")
    if routing:
        write_routing_png(png_dir / "routing.png", run["routing_curve"], routing, plt)
        written["routing"] = png_dir / "routing.png"

    if run["tuned"]:
        # Two panels: the loss is in standardised units, the validation MAE in score points.
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        loss = np.loadtxt(Path(live_dir) / LIVE_LOSS, delimiter="\t", skiprows=1, ndmin=2)
        left.plot(loss[:, 0], loss[:, 1])
        left.set_xlabel("optimiser step")
        left.set_title("training loss (MSE, standardised targets)", fontsize=9)
        val = np.loadtxt(Path(live_dir) / LIVE_VAL_MAE, delimiter="\t", skiprows=1, ndmin=2)
        right.plot(val[:, 0], val[:, 1], marker="o")
        right.set_xlabel("optimiser step")
        right.set_title("validation MAE", fontsize=9)
        fig.suptitle(f"Fine-tuning curves: {run['tuned'][1]}")
        fig.tight_layout()
        save(fig, "finetune_training")
    plt.close("all")
    return written


def write_routing_png(path, curves, chosen, plt):
    """The route stage's trade-off: hybrid MAE, high-tier recall and cost per article against the share of
    articles routed to the adapter, validation and test; the two ends (probe alone, adapter alone) and the chosen
    threshold marked."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = (("mae", "hybrid MAE"), ("recall_high", "high-tier recall (routed)"), ("cost_ms", "ms per article"))
    for ax, (key, label) in zip(axes, panels):
        for split, style in (("val", "--"), ("test", "-")):
            rows = [r for r in curves[split] if r["point"] == "threshold"]
            ax.plot([r["share_routed"] for r in rows], [r[key] for r in rows], style, label=split)
        for r in curves["test"]:
            if r["point"] != "threshold":
                ax.scatter([r["share_routed"]], [r[key]], marker="s", color="grey", zorder=3)
                ax.annotate(r["point"], (r["share_routed"], r[key]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        picked = [r for r in curves["test"] if r["point"] == "threshold" and r["threshold"] == chosen["threshold"]]
        if picked:
            ax.scatter([picked[0]["share_routed"]], [picked[0][key]], marker="*", s=120, color="black", zorder=4,
                       label="chosen (on validation)")
        ax.set_xlabel("share routed to the adapter")
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Hybrid routing: {chosen['screen']} then the adapter, by {chosen['by']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
