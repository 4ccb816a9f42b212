"""evaluate: score every candidate's test predictions with the same code; write per-candidate metrics and a summary.

MAE and RMSE are taken over all article x dimension cells; Spearman per dimension, then averaged
(as the reference study did). Candidates are derived from params (models x probe), never from the
files that happen to lie on disk, so a dropped model leaves no stale row in the summary.
"""
import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from common import InputError, as_list, load_params, load_schema, load_split, run_main, write_json


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
        raise InputError(path, "predictions missing: run the probe stage for this candidate")
    with np.load(path) as data:
        ids, scores = data["ids"].tolist(), data["scores"]
    if ids != test_ids:
        raise InputError(path, "ids do not match the prepared test split: re-run the probe stage", field="ids")
    return scores


def baseline_entry(params):
    reference = (params.get("baseline") or {})
    return {"mae": float(reference["reference_mae"]), "measured": False,
            "source": str(reference.get("source", "reference value from params"))}


def candidates(params):
    return [(model, probe) for model in as_list(params.get("models")) for probe in as_list(params.get("probe"))]


def evaluate(prepared_dir, probes_dir, metrics_dir, summary_path, params):
    schema = load_schema(prepared_dir)
    test = load_split(prepared_dir, "test")
    truth = np.array([r["labels"] for r in test])
    test_ids = [r["id"] for r in test]
    baseline = baseline_entry(params)
    results = {}
    for model, probe in candidates(params):
        pred = load_predictions(Path(probes_dir) / model / probe / "test_predictions.npz", test_ids)
        metrics = score(truth, pred, schema["dimensions"])
        metrics["gap"] = metrics["mae"] - baseline["mae"]
        results[(model, probe)] = metrics
    for (model, probe), metrics in results.items():
        write_json(Path(metrics_dir) / model / f"{probe}.json", metrics)

    best = min(results, key=lambda key: results[key]["mae"])
    row = lambda m: {k: m[k] for k in ("mae", "rmse", "spearman", "gap")}
    summary = {"baseline": baseline,
               "best": {"model": best[0], "probe": best[1], **row(results[best])},
               "candidates": {}}
    for (model, probe), metrics in results.items():
        summary["candidates"].setdefault(model, {})[probe] = row(metrics)
    write_json(summary_path, summary)
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True, help="directory written by prepare")
    parser.add_argument("--probes", required=True, help="directory holding <model>/<probe>/test_predictions.npz")
    parser.add_argument("--metrics-dir", required=True, help="directory for <model>/<probe>.json")
    parser.add_argument("--summary", required=True, help="JSON file with one entry per candidate")
    args = parser.parse_args()
    summary = evaluate(args.prepared, args.probes, args.metrics_dir, args.summary, load_params(args.params))
    for model, probes in summary["candidates"].items():
        for probe, m in probes.items():
            print(f"{model:32s} {probe:10s} MAE {m['mae']:.4f}  RMSE {m['rmse']:.4f}  "
                  f"Spearman {m['spearman']:.4f}  gap {m['gap']:+.4f}")


if __name__ == "__main__":
    run_main(main)
