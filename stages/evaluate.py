"""evaluate: score every candidate's test predictions with the same code; write per-candidate metrics and a summary.

MAE and RMSE are taken over all article x dimension cells; Spearman per dimension, then averaged
(as the reference study did). Candidates are derived from params (models x probe), never from the
files that happen to lie on disk, so a dropped model leaves no stale row in the summary.

The baseline is the fine-tuned adapter of the finetune stage (profile `finetune.profile`), scored on the same
test split by the same code; every gap is measured against it. The study's reference value stays beside it in
the summary (`baseline.reference_mae`) for comparison, never in place of it.
"""
import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from common import InputError, as_list, load_params, load_schema, load_split, read_json, run_main, write_json


def spearman(truth, pred):
    """Spearman's rho; undefined (NaN) when either side is constant."""
    if np.ptp(truth) == 0 or np.ptp(pred) == 0:
        return float("nan")
    return float(spearmanr(truth, pred).statistic)


def score(truth, pred, dimensions):
    """Overall and per-dimension MAE, RMSE and Spearman for one candidate."""
    truth, pred = np.asarray(truth, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    errors = pred - truth
    per_dimension = {
        name: {"mae": float(np.abs(errors[:, d]).mean()),
               "rmse": float(np.sqrt((errors[:, d] ** 2).mean())),
               "spearman": spearman(truth[:, d], pred[:, d])}
        for d, name in enumerate(dimensions)}
    rhos = [m["spearman"] for m in per_dimension.values() if not np.isnan(m["spearman"])]
    return {"mae": float(np.abs(errors).mean()), "rmse": float(np.sqrt((errors ** 2).mean())),
            "spearman": float(np.mean(rhos)) if rhos else float("nan"), "n_test": int(len(truth)),
            "per_dimension": per_dimension}


def load_predictions(path, test_ids):
    """Predictions in test-split order; a file written for another split is refused, not misaligned."""
    if not Path(path).is_file():
        raise InputError(path, "predictions missing: run `dvc repro` (or `dvc pull`) for this candidate")
    with np.load(path) as data:
        ids, scores = data["ids"].tolist(), data["scores"]
    if ids != test_ids:
        raise InputError(path, "ids do not match the prepared test split: re-run its stage", field="ids")
    return scores


def adapter_dir(adapters_dir, params):
    """The folder of the adapter that is the baseline: models/adapters/<finetune.profile>."""
    return Path(adapters_dir) / str((params.get("finetune") or {}).get("profile"))


def measured_baseline(adapters_dir, params, truth, test_ids, dimensions):
    """The adapter's metrics on the test split, with where they come from and the study's reference beside them."""
    folder = adapter_dir(adapters_dir, params)
    metrics = score(truth, load_predictions(folder / "test_predictions.npz", test_ids), dimensions)
    info = read_json(folder / "scoring.json")
    reference = params.get("baseline") or {}
    provenance = {"measured": True, "profile": info["profile"], "base": info["base"], "adapter": folder.as_posix(),
                  "split": "test", "reference_mae": float(reference["reference_mae"]),
                  "reference_source": str(reference.get("source", "reference value from params"))}
    return {**metrics, **provenance}


def candidates(params):
    return [(model, probe) for model in as_list(params.get("models")) for probe in as_list(params.get("probe"))]


def hardware(embed_meta_dir, finetune_metrics, params):
    """Where the numbers were computed, as the embed and finetune stages recorded it: {embed: {model: signature},
    finetune: signature}. A change here in `dvc metrics diff` says a change of numbers is a change of machine."""
    signatures = {"embed": {}}
    for model in as_list(params.get("models")):
        meta_path = Path(embed_meta_dir) / f"{model}.json"
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
        pred = load_predictions(Path(probes_dir) / model / probe / "test_predictions.npz", test_ids)
        metrics = score(truth, pred, schema["dimensions"])
        metrics["gap"] = metrics["mae"] - baseline["mae"]
        results[(model, probe)] = metrics
    for (model, probe), metrics in results.items():
        write_json(Path(metrics_dir) / model / f"{probe}.json", metrics)
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
