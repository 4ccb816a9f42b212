"""evaluate: score every candidate's test predictions with the same code (news_probes.metrics); write per-candidate
metrics and a summary naming the best candidate.

Candidates are derived from params (models x probe), never from the files that happen to lie on disk, so a
dropped model leaves no stale row in the summary.

The baseline is the fine-tuned adapter of the finetune stage (profile `finetune.profile`), scored on the same
test split by the same code; every gap is measured against it. The study's reference value stays beside it in
the summary (`baseline.reference_mae`) for comparison, never in place of it.
"""
import argparse
from pathlib import Path

import numpy as np

from news_probes.artifacts import (adapter_dir, candidate_metrics_file, load_predictions, model_file, probe_dir,
                                   read_scoring)
from news_probes.data import load_schema, load_split
from news_probes.io import InputError, read_json, run_main, write_json
from news_probes.metrics import score
from news_probes.params import as_list, candidates, load_params


def measured_baseline(adapters_dir, params, truth, test_ids, dimensions):
    """The adapter's metrics on the test split, with where they come from and the study's reference beside them."""
    folder = adapter_dir(adapters_dir, (params.get("finetune") or {}).get("profile"))
    metrics = score(truth, load_predictions(folder, test_ids), dimensions)
    info = read_scoring(folder)
    reference = params.get("baseline") or {}
    provenance = {"measured": True, "profile": info["profile"], "base": info["base"], "adapter": folder.as_posix(),
                  "split": "test", "reference_mae": float(reference["reference_mae"]),
                  "reference_source": str(reference.get("source", "reference value from params"))}
    return {**metrics, **provenance}


def hardware(embed_meta_dir, finetune_metrics, params):
    """Where the numbers were computed, as the embed and finetune stages recorded it: {embed: {model: signature},
    finetune: signature}. A change here in `dvc metrics diff` says a change of numbers is a change of machine."""
    signatures = {"embed": {}}
    for model in as_list(params.get("models")):
        meta_path = model_file(embed_meta_dir, model)
        if not meta_path.is_file():
            raise InputError(meta_path, "embed metrics missing: run `dvc repro` (or `dvc pull`) for this model")
        signatures["embed"][model] = read_json(meta_path).get("hardware")
    if not Path(finetune_metrics).is_file():
        raise InputError(finetune_metrics, "finetune metrics missing: run `dvc repro` (or `dvc pull`)")
    signatures["finetune"] = read_json(finetune_metrics).get("hardware")
    return signatures


def evaluate(prepared_dir, probes_dir, adapters_dir, metrics_dir, baseline_path, summary_path, params,
             embed_meta_dir, finetune_metrics):
    schema = load_schema(prepared_dir)
    test = load_split(prepared_dir, "test")
    truth = np.array([r["labels"] for r in test])
    test_ids = [r["id"] for r in test]
    baseline = measured_baseline(adapters_dir, params, truth, test_ids, schema["dimensions"])
    results = {}
    for model, probe in candidates(params):
        pred = load_predictions(probe_dir(probes_dir, model, probe), test_ids)
        metrics = score(truth, pred, schema["dimensions"])
        metrics["gap"] = metrics["mae"] - baseline["mae"]
        results[(model, probe)] = metrics
    for (model, probe), metrics in results.items():
        write_json(candidate_metrics_file(metrics_dir, model, probe), metrics)
    write_json(baseline_path, baseline)

    best = min(results, key=lambda key: results[key]["mae"])
    row = lambda m: {k: m[k] for k in ("mae", "rmse", "spearman", "gap")}
    summary = {"baseline": {k: v for k, v in baseline.items() if k != "per_dimension"},
               "best": {"model": best[0], "probe": best[1], **row(results[best])},
               "candidates": {}, "hardware": hardware(embed_meta_dir, finetune_metrics, params)}
    for (model, probe), metrics in results.items():
        summary["candidates"].setdefault(model, {})[probe] = row(metrics)
    write_json(summary_path, summary)
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True, help="directory written by prepare")
    parser.add_argument("--probes", required=True, help="directory holding <model>/<probe>/test_predictions.npz")
    parser.add_argument("--adapters", required=True, help="directory holding <profile>/test_predictions.npz")
    parser.add_argument("--metrics-dir", required=True, help="directory for <model>/<probe>.json")
    parser.add_argument("--baseline", required=True, help="JSON file for the fine-tuned baseline's metrics")
    parser.add_argument("--summary", required=True, help="JSON file with one entry per candidate")
    parser.add_argument("--embed-meta", required=True, help="directory of the embed stages' <model>.json")
    parser.add_argument("--finetune-metrics", required=True, help="the finetune stage's metrics.json")
    args = parser.parse_args()
    summary = evaluate(args.prepared, args.probes, args.adapters, args.metrics_dir, args.baseline, args.summary,
                       load_params(args.params), args.embed_meta, args.finetune_metrics)
    b = summary["baseline"]
    print(f"{'baseline: ' + b['profile']:43s} MAE {b['mae']:.4f}  RMSE {b['rmse']:.4f}  Spearman {b['spearman']:.4f}"
          f"  (reference {b['reference_mae']:.2f})")
    for model, probes in summary["candidates"].items():
        for probe, m in probes.items():
            print(f"{model:32s} {probe:10s} MAE {m['mae']:.4f}  RMSE {m['rmse']:.4f}  "
                  f"Spearman {m['spearman']:.4f}  gap {m['gap']:+.4f}")


if __name__ == "__main__":
    run_main(main)
