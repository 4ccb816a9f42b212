"""probe@<model>: fit the probes selected by `probe` on one model's embeddings; save each probe and its test predictions.

The output folder also holds scoring.json (the embedder's registry entry, dimension names, score range), so
that stages/score.py can score new articles from this folder alone.
"""
import argparse
from pathlib import Path

import numpy as np

from common import (SPLITS, InputError, as_list, check_names, load_params, load_schema, load_split, run_main,
                    save_predictions, staged_directory, write_json)
from probes import PROBES, build_probe, timed_fit


def selected_probes(params, params_path="params.yaml"):
    """(name, hyperparameters) for each probe named by `probe`, checked against the known kinds."""
    names = as_list(params.get("probe"))
    if not names:
        raise InputError(params_path, "names no probe", field="probe")
    check_names(names, PROBES, params_path, "probe")
    hyper = params.get("probes") or {}
    return [(name, dict(hyper.get(name) or {})) for name in names]


def built_probes(chosen, score_range, seed, params_path):
    """Every chosen probe built before any is fitted, so that a bad hyperparameter fails at once."""
    built = []
    for name, hyperparameters in chosen:
        try:
            built.append((name, build_probe(name, hyperparameters, score_range, seed)))
        except (TypeError, ValueError) as err:
            raise InputError(params_path, str(err), field=f"probes.{name}") from None
    return built


def fit_probes(model, prepared_dir, embeddings_dir, out_dir, fit_metrics_path, params, params_path="params.yaml"):
    chosen = selected_probes(params, params_path)
    embedder = (params.get("embedders") or {}).get(model)
    if not embedder:
        raise InputError(params_path, f"no registry entry for model {model!r}", field=f"embedders.{model}")
    schema = load_schema(prepared_dir)
    splits = {s: load_split(prepared_dir, s) for s in SPLITS}
    X = {s: np.load(Path(embeddings_dir) / f"{s}.npy") for s in splits}
    y = {s: np.array([r["labels"] for r in rows]) for s, rows in splits.items()}
    for s in splits:
        if len(X[s]) != len(y[s]):
            raise InputError(Path(embeddings_dir) / f"{s}.npy",
                             f"{len(X[s])} rows for {len(y[s])} records: re-run embed")

    fit_report = {}
    probes = built_probes(chosen, schema["score_range"], int(params["seed"]), params_path)
    with staged_directory(out_dir) as staging:
        for name, probe in probes:
            seconds = timed_fit(probe, X["train"], y["train"], X["val"], y["val"])
            probe.save(staging / name)
            save_predictions(staging / name / "test_predictions.npz", [r["id"] for r in splits["test"]],
                             probe.predict(X["test"]))
            fit_report[name] = {"fit_seconds": round(seconds, 3), **probe.fit_info()}
            print(f"probe {name}: {fit_report[name]}")
        write_json(staging / "scoring.json", {"model": model, "embedder": embedder,
                                              "dimensions": schema["dimensions"], "score_range": schema["score_range"]})
    write_json(fit_metrics_path, fit_report)
    return fit_report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True, help="a key of embedders in params (recorded for scoring)")
    parser.add_argument("--prepared", required=True, help="directory written by prepare")
    parser.add_argument("--embeddings", required=True, help="directory written by embed@<model>")
    parser.add_argument("--out", required=True, help="directory for one sub-directory per probe")
    parser.add_argument("--fit-metrics", required=True, help="JSON file for chosen hyperparameters and fit times")
    args = parser.parse_args()
    fit_probes(args.model, args.prepared, args.embeddings, args.out, args.fit_metrics, load_params(args.params),
               args.params)


if __name__ == "__main__":
    run_main(main)
