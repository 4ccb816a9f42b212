"""report: the comparison report (reports/comparison.md) and the plot data, written up from files the stages
wrote in this run: evaluate's metrics and its best candidate (metrics/summary.json), the test predictions (for
bootstrap intervals and plots), and the embed, probe, finetune and route stages' own measurements. It loads no model and
times nothing, so the same inputs give the same bytes."""
import argparse
import os
from pathlib import Path

import numpy as np

from news_probes.artifacts import (PREDICTED_SPLITS, adapter_dir, candidate_dir, candidate_metrics_file,
                                   load_predictions, load_table, model_file)
from news_probes.comparison import markdown
from news_probes.data import load_schema, load_split
from news_probes.io import read_json, run_main, write_bytes
from news_probes.metrics import bootstrap
from news_probes.params import STACKED, base_seed, field_check, integer, load_params, scored_candidates
from news_probes.plots import write_plots, write_pngs


def load_run(prepared, probes_dir, stacked_dir, stack_weights, adapters_dir, metrics_dir, baseline_path,
             summary_path, finetune_metrics, embed_meta_dir, fit_dir, data_metrics, routing, routing_curve, params):
    """Everything the report writes up, as one dict (the candidates are (model, probe) pairs; `tuned` is the
    baseline's row key, None when no baseline was measured)."""
    schema = load_schema(prepared)
    test = load_split(prepared, "test")
    truth = np.array([r["labels"] for r in test])
    ids = [r["id"] for r in test]
    baseline, summary = read_json(baseline_path), read_json(summary_path)
    cands = scored_candidates(params)
    preds = {c: load_predictions(candidate_dir(probes_dir, stacked_dir, c), "test", ids)["scores"] for c in cands}
    results = {c: read_json(candidate_metrics_file(metrics_dir, *c)) for c in cands}
    tuned = ("fine-tuned", baseline["profile"]) if baseline["measured"] else None
    if tuned:
        preds[tuned] = load_predictions(adapter_dir(adapters_dir, baseline["profile"]), "test", ids)["scores"]
        results[tuned] = {**baseline, "gap": 0.0}
    errors = {c: np.abs(preds[c] - truth).mean(axis=1) for c in preds}
    best = (summary["best"]["model"], summary["best"]["probe"])
    resamples = field_check("params.yaml", "report.bootstrap_resamples", integer,
                            (params.get("report") or {}).get("bootstrap_resamples", 1000), minimum=1)
    models = dict.fromkeys(c[0] for c in cands if c != STACKED)
    intervals = bootstrap(errors, [*cands, *([tuned] if tuned else [])], best, errors[tuned] if tuned else None,
                          resamples, base_seed(params))
    return {"params": params, "schema": schema, "dimensions": schema["dimensions"], "truth": truth, "preds": preds,
            "errors": errors, "results": results, "order": sorted(cands, key=lambda c: results[c]["val"]["mae"]),
            "best": best, "test_best": (summary["test_best"]["model"], summary["test_best"]["probe"]),
            "tuned": tuned, "baseline": baseline, "tuning": read_json(finetune_metrics), "ci": intervals,
            "resamples": resamples, "splits": read_json(data_metrics),
            "embed_meta": {m: read_json(model_file(embed_meta_dir, m)) for m in models},
            "fits": {m: read_json(model_file(fit_dir, m)) for m in models}, "stack": read_json(stack_weights),
            "routing": read_json(routing),
            "routing_curve": {split: load_table(routing_curve, split) for split in PREDICTED_SPLITS},
            "routing_screens": load_table(routing_curve, "screens")}


def report(prepared, probes_dir, stacked_dir, stack_weights, adapters_dir, metrics_dir, baseline_path, summary_path,
           finetune_metrics, embed_meta_dir, fit_dir, data_metrics, routing, routing_curve, out, plots_dir, params):
    run = load_run(prepared, probes_dir, stacked_dir, stack_weights, adapters_dir, metrics_dir, baseline_path,
                   summary_path, finetune_metrics, embed_meta_dir, fit_dir, data_metrics, routing, routing_curve,
                   params)
    write_plots(plots_dir, run, probes_dir)
    pngs = write_pngs(plots_dir, run, probes_dir, Path(finetune_metrics).parent)
    # relative to the report, with forward slashes: links that render on a git host
    figures = {stem: Path(os.path.relpath(path, Path(out).parent)).as_posix() for stem, path in pngs.items()}
    text = markdown(run, figures)
    write_bytes(out, lambda f: f.write(text.encode("utf-8")))
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--probes", required=True, help="directory holding <model>/<probe>/ from probe")
    parser.add_argument("--stacked", required=True, help="the stack stage's folder of predictions")
    parser.add_argument("--stack-weights", required=True, help="the stack stage's weights (metrics JSON)")
    parser.add_argument("--adapters", required=True, help="directory holding <profile>/ from finetune")
    parser.add_argument("--metrics-dir", required=True, help="directory holding <model>/<probe>.json from evaluate")
    parser.add_argument("--baseline", required=True, help="the baseline's metrics from evaluate")
    parser.add_argument("--summary", required=True, help="evaluate's summary (the best candidate)")
    parser.add_argument("--finetune-metrics", required=True, help="metrics.json of finetune's DVCLive directory")
    parser.add_argument("--embed-meta", required=True, help="directory holding <model>.json from embed")
    parser.add_argument("--fit-metrics", required=True, help="directory holding <model>.json from probe")
    parser.add_argument("--data-metrics", required=True)
    parser.add_argument("--routing", required=True, help="the route stage's metrics (the chosen point, times)")
    parser.add_argument("--routing-curve", required=True, help="the route stage's folder of {val,test}.csv")
    parser.add_argument("--out", required=True)
    parser.add_argument("--plots", required=True)
    args = parser.parse_args()
    report(args.prepared, args.probes, args.stacked, args.stack_weights, args.adapters, args.metrics_dir, args.baseline, args.summary,
           args.finetune_metrics, args.embed_meta, args.fit_metrics, args.data_metrics, args.routing,
           args.routing_curve, args.out, args.plots,
           load_params(args.params))


if __name__ == "__main__":
    run_main(main)
