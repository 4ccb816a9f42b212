"""probe@<model>: fit the probes selected by `probe` on one model's embeddings, each as a seed ensemble
(`probes.<name>.seeds`), on a model of `models` or a `combined` one; save each with its validation and test predictions (the seeds' mean and each seed's
own) and scoring.json (what `news-probes score` needs), and its fit time and latency alone (embeddings in,
scores out) in the fit metrics."""
import argparse

import numpy as np

from news_probes.artifacts import (PREDICTED_SPLITS, copy_fitted, load_embeddings, save_predictions,
                                   write_history, write_scoring)
from news_probes.data import SPLITS, load_schema, load_split
from news_probes.io import InputError, run_main, staged_directory, write_json
from news_probes.log import logger
from news_probes.params import grid_models, load_params, scoring_entry
from news_probes.probes import built_probes, timed_fit
from news_probes.timing import latency_ms


def fit_probes(model, prepared_dir, embeddings_dir, out_dir, fit_metrics_path, params, params_path="params.yaml"):
    schema = load_schema(prepared_dir)
    probes = built_probes(params, schema["score_range"], params_path)
    if model not in grid_models(params, params_path):
        raise InputError(params_path, f"{model!r} is not in the grid (`models` or `combined`)", field="models")
    embedder = scoring_entry(params, model)      # checked by the embed stage, recorded for scoring
    splits = {s: load_split(prepared_dir, s) for s in SPLITS}
    X = {s: load_embeddings(embeddings_dir, s, len(rows)) for s, rows in splits.items()}
    y = {s: np.array([r["labels"] for r in rows]) for s, rows in splits.items()}

    fit_report = {}
    with staged_directory(out_dir) as staging:
        for name, probe in probes:
            seconds = timed_fit(probe, X["train"], y["train"], X["val"], y["val"])
            folder = staging / name
            probe.save(folder)
            copy_fitted(embeddings_dir, folder)     # a fitted embedder (tfidf) travels with the probe
            if getattr(probe, "history_", None):
                write_history(folder, probe.history_)
            for split in PREDICTED_SPLITS:
                seed_scores = probe.member_predictions(X[split])
                save_predictions(folder, split, [r["id"] for r in splits[split]], seed_scores.mean(axis=0),
                                 seed_scores)
            write_scoring(folder, "probe", schema["dimensions"], schema["score_range"], model=model, probe=name,
                          embedder=embedder)
            fit_report[name] = {"fit_seconds": round(seconds, 3), **probe.fit_info(),
                                "latency_ms": latency_ms(probe.predict, X["test"], repeats=50)}
            logger.info(f"probe {name}: seeds {probe.seeds} fitted in {seconds:.1f} s (details: {fit_metrics_path})")
    write_json(fit_metrics_path, fit_report)
    return fit_report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True, help="a key of embedders in params (recorded for scoring)")
    parser.add_argument("--prepared", required=True, help="directory written by prepare")
    parser.add_argument("--embeddings", required=True, help="directory written by embed@<model>")
    parser.add_argument("--out", required=True, help="directory for one sub-directory per probe")
    parser.add_argument("--fit-metrics", required=True, help="JSON file for chosen hyperparameters, fit times "
                                                             "and latency")
    args = parser.parse_args()
    fit_probes(args.model, args.prepared, args.embeddings, args.out, args.fit_metrics, load_params(args.params),
               args.params)


if __name__ == "__main__":
    run_main(main)
