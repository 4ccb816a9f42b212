"""stack: the stacked candidate. Fits non-negative weights summing to 1 over the grid candidates' validation
predictions (news_probes.stacking), writes its test predictions (weights from the whole validation split),
cross-fitted validation predictions (so its validation MAE is honest for selection), scoring.json (its members'
probe folders and weights, for `news-probes score`) and the weights as metrics. Never reads the test labels."""
import argparse
import os

import numpy as np

from news_probes.artifacts import PREDICTED_SPLITS, load_predictions, probe_dir, save_predictions, write_scoring
from news_probes.data import load_schema, load_split
from news_probes.io import InputError, run_main, staged_directory, write_json
from news_probes.log import logger
from news_probes.params import STACKED, base_seed, candidates, field_check, integer, load_params, scored_candidates
from news_probes.stacking import Stack, cross_fitted


def stack(prepared_dir, probes_dir, out_dir, weights_path, params, params_path="params.yaml"):
    settings = params.get("stack") or {}
    folds = field_check(params_path, "stack.folds", integer, settings.get("folds", 5), minimum=2)
    schema = load_schema(prepared_dir)
    cands = candidates(params)
    if STACKED not in scored_candidates(params):
        with staged_directory(out_dir) as staging:
            (staging / "NOT_STACKED").write_text("fewer than two candidates in the grid\n", encoding="utf-8")
        write_json(weights_path, {"weighting": None, "folds": None, "weights": {}})
        return {"weighting": None, "weights": {}}
    ids = {split: [r["id"] for r in load_split(prepared_dir, split)] for split in PREDICTED_SPLITS}
    truth_val = np.array([r["labels"] for r in load_split(prepared_dir, "val")])
    P = {split: np.stack([load_predictions(probe_dir(probes_dir, *c), split, ids[split])["scores"] for c in cands])
         for split in PREDICTED_SPLITS}
    try:
        model = Stack(settings.get("weights", "shared"), schema["score_range"])
    except ValueError as err:
        raise InputError(params_path, str(err), field="stack.weights") from None
    model.fit(P["val"], truth_val)
    val_scores = cross_fitted(model, P["val"], truth_val, folds, base_seed(params, params_path))
    names = [f"{m}/{p}" for m, p in cands]
    weight_rows = model.weights_ if model.weights_.ndim == 2 else model.weights_[None, :]
    # what `news-probes score` needs: the members with a non-zero weight, as paths relative to this folder
    members = [{"folder": os.path.relpath(probe_dir(probes_dir, *c), out_dir), "candidate": name,
                "weights": weight_rows[:, k].round(6).tolist()}
               for k, (c, name) in enumerate(zip(cands, names)) if weight_rows[:, k].max() > 0]
    with staged_directory(out_dir) as staging:
        save_predictions(staging, "val", ids["val"], val_scores)
        save_predictions(staging, "test", ids["test"], model.predict(P["test"]))
        write_scoring(staging, "stack", schema["dimensions"], schema["score_range"], weighting=model.weighting,
                      members=members)
    if model.weights_.ndim == 1:
        weights = dict(zip(names, np.round(model.weights_, 4).tolist()))
    else:
        weights = {d: dict(zip(names, np.round(w, 4).tolist())) for d, w in zip(schema["dimensions"], model.weights_)}
    result = {"weighting": model.weighting, "folds": folds, "weights": weights}
    write_json(weights_path, result)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True, help="directory written by prepare")
    parser.add_argument("--probes", required=True, help="directory holding <model>/<probe>/{val,test}_predictions.npz")
    parser.add_argument("--out", required=True, help="directory for the stack's {val,test}_predictions.npz")
    parser.add_argument("--weights", required=True, help="JSON metrics file for the fitted weights")
    args = parser.parse_args()
    result = stack(args.prepared, args.probes, args.out, args.weights, load_params(args.params), args.params)
    logger.info(f"stack ({result['weighting']}): {result['weights']}")


if __name__ == "__main__":
    run_main(main)
