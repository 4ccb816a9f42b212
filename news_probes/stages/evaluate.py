"""evaluate: score every candidate's validation and test predictions with the same code (news_probes.metrics);
write per-candidate metrics and a summary naming the best candidate, chosen on validation MAE.

Candidates are derived from params (models and combined x probe, and the stacked candidate), never from the files that happen to lie on disk, so a
dropped model leaves no stale row in the summary. Selection looks at the validation split only; the test split
measures the chosen candidate once (the summary also names the test split's own pick, to show the size of the
selection effect).

The baseline is the fine-tuned adapter of the finetune stage (profile `finetune.profile`), scored on the same
splits by the same code; every gap is measured against it. With `finetune.profile: none` there is no measured
baseline and no gap. The study's reference value stays in the summary (`baseline.reference_mae`) for
comparison, never in place of a measured baseline.
"""
import argparse
from pathlib import Path

import numpy as np

from news_probes.artifacts import (NO_PROFILE, PREDICTED_SPLITS, adapter_dir, candidate_dir, candidate_metrics_file,
                                   load_predictions, model_file, read_scoring)
from news_probes.data import load_schema, load_split
from news_probes.io import InputError, read_json, run_main, write_json
from news_probes.log import logger
from news_probes.metrics import candidate_metrics, filter_config, seed_sd
from news_probes.params import as_list, load_params, scored_candidates

def reference(params):
    ref = params.get("baseline") or {}
    return {"reference_mae": float(ref["reference_mae"]),
            "reference_source": str(ref.get("source", "reference value from params"))}


def baseline_metrics(adapters_dir, params, evaluate_folder):
    """The adapter's metrics, with where they come from and the study's reference beside them; without a
    profile (`none`), only that no baseline was measured, and the reference."""
    profile = (params.get("finetune") or {}).get("profile")
    if profile == NO_PROFILE:
        return {"measured": False, "profile": NO_PROFILE, **reference(params)}
    folder = adapter_dir(adapters_dir, profile)
    info = read_scoring(folder)
    return {**evaluate_folder(folder), "measured": True, "profile": info["profile"], "base": info["base"],
            "adapter": folder.as_posix(), "split": "test", **reference(params)}


def hardware(embed_meta_dir, finetune_metrics, params):
    """Where the numbers were computed, as the embed and finetune stages recorded it: {embed: {model: signature},
    finetune: signature or None}. A change here in `dvc metrics diff` says a change of numbers is a change of
    machine."""
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


def summary_row(m):
    """What `dvc metrics diff` shows of one candidate: the choice, the test figures, the spread, the filter."""
    f = m["filter"]
    return {"val_mae": m["val"]["mae"], "mae": m["mae"], "rmse": m["rmse"], "spearman": m["spearman"],
            "gap": m.get("gap"), "seed_sd": seed_sd(m),
            "weighted_mae": f["weighted_mae"], "precision": f["precision"], "recall": f["recall"],
            "high_tier_recall": f["tier_recall"]["high"]}


def evaluate(prepared_dir, probes_dir, stacked_dir, adapters_dir, metrics_dir, baseline_path, summary_path, params,
             embed_meta_dir, finetune_metrics, params_path="params.yaml"):
    schema = load_schema(prepared_dir)
    dimensions = schema["dimensions"]
    filter_cfg = filter_config(params, dimensions, params_path)
    rows = {split: load_split(prepared_dir, split) for split in PREDICTED_SPLITS}
    truth = {split: np.array([r["labels"] for r in rs]) for split, rs in rows.items()}

    def evaluate_folder(folder):
        predictions = {split: load_predictions(folder, split, [r["id"] for r in rs]) for split, rs in rows.items()}
        return candidate_metrics(truth, predictions, dimensions, filter_cfg, schema["score_range"])

    baseline = baseline_metrics(adapters_dir, params, evaluate_folder)
    results = {}
    for model, probe in scored_candidates(params):
        metrics = evaluate_folder(candidate_dir(probes_dir, stacked_dir, (model, probe)))
        metrics["gap"] = metrics["mae"] - baseline["mae"] if baseline["measured"] else None
        results[(model, probe)] = metrics
    for (model, probe), metrics in results.items():
        write_json(candidate_metrics_file(metrics_dir, model, probe), metrics)
    write_json(baseline_path, baseline)

    best = min(results, key=lambda key: results[key]["val"]["mae"])
    test_best = min(results, key=lambda key: results[key]["mae"])
    summary = {"baseline": {k: v for k, v in baseline.items() if k not in ("per_dimension", "filter", "val")},
               "best": {"model": best[0], "probe": best[1], "chosen_on": "val", **summary_row(results[best])},
               "test_best": {"model": test_best[0], "probe": test_best[1], "mae": results[test_best]["mae"]},
               "candidates": {}, "hardware": hardware(embed_meta_dir, finetune_metrics, params)}
    if baseline["measured"]:
        summary["baseline"].update(val_mae=baseline["val"]["mae"], recall=baseline["filter"]["recall"],
                                   high_tier_recall=baseline["filter"]["tier_recall"]["high"])
    for (model, probe), metrics in results.items():
        summary["candidates"].setdefault(model, {})[probe] = summary_row(metrics)
    write_json(summary_path, summary)
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True, help="directory written by prepare")
    parser.add_argument("--probes", required=True, help="directory holding <model>/<probe>/{val,test}_predictions.npz")
    parser.add_argument("--stacked", required=True, help="the stack stage's folder of predictions")
    parser.add_argument("--adapters", required=True, help="directory holding <profile>/{val,test}_predictions.npz")
    parser.add_argument("--metrics-dir", required=True, help="directory for <model>/<probe>.json")
    parser.add_argument("--baseline", required=True, help="JSON file for the fine-tuned baseline's metrics")
    parser.add_argument("--summary", required=True, help="JSON file with one entry per candidate")
    parser.add_argument("--embed-meta", required=True, help="directory of the embed stages' <model>.json")
    parser.add_argument("--finetune-metrics", required=True, help="the finetune stage's metrics.json")
    args = parser.parse_args()
    summary = evaluate(args.prepared, args.probes, args.stacked, args.adapters, args.metrics_dir, args.baseline, args.summary,
                       load_params(args.params), args.embed_meta, args.finetune_metrics, args.params)
    b = summary["baseline"]
    if b["measured"]:
        logger.info(f"{'baseline: ' + b['profile']:43s} MAE {b['mae']:.4f}  RMSE {b['rmse']:.4f}  "
                    f"Spearman {b['spearman']:.4f}  (reference {b['reference_mae']:.2f})")
    else:
        logger.info(f"no baseline measured (finetune.profile: none); the study's reference {b['reference_mae']:.2f} "
                    f"is not a measurement on this split")
    for model, probes in summary["candidates"].items():
        for probe, m in probes.items():
            gap = "" if m["gap"] is None else f"  gap {m['gap']:+.4f}"
            spread = "" if m["seed_sd"] is None else f"  seed sd {m['seed_sd']:.4f}"
            logger.info(f"{model:32s} {probe:10s} val MAE {m['val_mae']:.4f}  MAE {m['mae']:.4f}  "
                        f"RMSE {m['rmse']:.4f}  Spearman {m['spearman']:.4f}{spread}  recall {m['recall']:.3f}{gap}")
    best = summary["best"]
    logger.info(f"best on validation: {best['model']} / {best['probe']} (test MAE {best['mae']:.4f})")


if __name__ == "__main__":
    run_main(main)
