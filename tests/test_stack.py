import json
import shutil

import numpy as np
import pytest

from news_probes.artifacts import load_predictions
from news_probes.data import load_split
from news_probes.stacking import Stack, cross_fitted, simplex_weights
from news_probes.stages.stack import stack


def test_weights_are_a_convex_combination_that_finds_the_informative_candidates():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 10, size=(80, 3))
    good = truth + rng.normal(0, 0.3, truth.shape)
    biased_high, biased_low = truth + 1.0, truth - 1.0      # their mean is the truth
    noise = rng.uniform(0, 10, truth.shape)
    P = np.stack([good, biased_high, biased_low, noise])
    w = simplex_weights(P, truth)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert w[3] == pytest.approx(0.0, abs=1e-6)              # pure noise gets nothing
    blended = Stack().fit(P, truth).predict(P)
    assert np.abs(blended - truth).mean() <= min(np.abs(p - truth).mean() for p in P) + 1e-9
    # A single candidate gets all the weight; per-dimension weights are one convex set per dimension.
    assert simplex_weights(P[:1], truth) == pytest.approx([1.0])
    per_dimension = Stack("per_dimension").fit(P, truth).weights_
    assert per_dimension.shape == (3, 4) and (per_dimension >= 0).all()
    np.testing.assert_allclose(per_dimension.sum(axis=1), 1.0)


def test_cross_fitted_predictions_never_use_their_own_fold():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 10, size=(40, 2))
    P = np.stack([truth + rng.normal(0, 1, truth.shape), truth + rng.normal(0, 2, truth.shape),
                  rng.uniform(0, 10, truth.shape)])
    out = cross_fitted(Stack(), P, truth, folds=4, seed=0)
    fold = np.array_split(np.random.default_rng(0).permutation(40), 4)[0]     # the split cross_fitted makes
    changed = truth.copy()
    changed[fold] = 10.0 - changed[fold]
    again = cross_fitted(Stack(), P, changed, folds=4, seed=0)
    # The fold's own predictions come from weights fitted on the other folds only: its labels cannot move them;
    # they do move the other folds' weights.
    np.testing.assert_array_equal(again[fold], out[fold])
    others = np.setdiff1d(np.arange(40), fold)
    assert not np.array_equal(again[others], out[others])


def test_stack_stage_never_reads_the_test_labels(tmp_path, tiny_pipeline):
    inputs, params = tiny_pipeline
    first = json.loads((inputs / "stack.json").read_text())
    assert first["weighting"] == "shared" and set(first["weights"]) == {"tiny/ridge", "tiny/mlp", "tiny/lightgbm"}
    assert all(w >= 0 for w in first["weights"].values()) and sum(first["weights"].values()) == pytest.approx(1, 1e-3)
    # The same inputs with every test label changed: the weights and both splits' predictions are unchanged.
    prepared = tmp_path / "prepared"
    shutil.copytree(inputs / "prepared", prepared)
    rows = [json.loads(line) for line in (prepared / "test.jsonl").read_text().splitlines()]
    (prepared / "test.jsonl").write_text("".join(json.dumps({**r, "labels": [0.0] * len(r["labels"])}) + "\n"
                                                 for r in rows))
    again = stack(prepared, inputs / "probes", tmp_path / "stacked", tmp_path / "stack.json", params)
    assert again["weights"] == first["weights"]
    for split in ("val", "test"):
        ids = [r["id"] for r in load_split(prepared, split)]
        np.testing.assert_array_equal(load_predictions(tmp_path / "stacked", split, ids)["scores"],
                                      load_predictions(inputs / "stacked", split, ids)["scores"])
    # Changing validation labels does move them: the weights are fitted there.
    rows = [json.loads(line) for line in (prepared / "val.jsonl").read_text().splitlines()]
    (prepared / "val.jsonl").write_text("".join(json.dumps({**r, "labels": [10.0] * len(r["labels"])}) + "\n"
                                                for r in rows))
    moved = stack(prepared, inputs / "probes", tmp_path / "stacked2", tmp_path / "stack2.json", params)
    assert moved["weights"] != first["weights"]


def test_a_grid_of_one_candidate_writes_no_stack(tmp_path, tiny_pipeline):
    inputs, params = tiny_pipeline
    result = stack(inputs / "prepared", inputs / "probes", tmp_path / "stacked", tmp_path / "stack.json",
                   {**params, "probe": "ridge"})
    assert result["weights"] == {} and (tmp_path / "stacked" / "NOT_STACKED").is_file()
