import json

import numpy as np
import pytest

from common import InputError
from evaluate import evaluate, score


def test_score_by_hand():
    truth = np.array([[0.0, 10.0], [2.0, 4.0], [4.0, 7.0]])
    pred = np.array([[1.0, 10.0], [2.0, 6.0], [1.0, 8.0]])
    m = score(truth, pred, ["a", "b"])
    assert m["mae"] == pytest.approx((1 + 0 + 0 + 2 + 3 + 1) / 6)
    assert m["rmse"] == pytest.approx(np.sqrt((1 + 0 + 0 + 4 + 9 + 1) / 6))
    assert m["per_dimension"]["a"]["mae"] == pytest.approx(4 / 3)
    # a: ranks (1,2,3) vs (1.5,3,1.5) -> rho 0; b: (3,1,2) vs (3,1,2) -> 1.
    assert m["per_dimension"]["a"]["spearman"] == pytest.approx(0.0)
    assert m["per_dimension"]["b"]["spearman"] == pytest.approx(1.0)
    assert m["spearman"] == pytest.approx(0.5)


def test_constant_prediction_has_undefined_spearman_left_out_of_the_mean():
    truth = np.array([[1.0, 1.0], [2.0, 3.0], [3.0, 2.0]])
    pred = np.array([[5.0, 1.0], [5.0, 3.0], [5.0, 2.0]])
    m = score(truth, pred, ["a", "b"])
    assert np.isnan(m["per_dimension"]["a"]["spearman"]) and m["spearman"] == pytest.approx(1.0)


def write_case(tmp_path, params, preds):
    prepared, probes = tmp_path / "prepared", tmp_path / "probes"
    prepared.mkdir()
    truth = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    rows = [{"id": f"t{i}", "title": "", "text": "x", "labels": v} for i, v in enumerate(truth)]
    (prepared / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (prepared / "schema.json").write_text(json.dumps({"dimensions": ["a", "b"], "score_range": [0, 10]}))
    for (model, probe), offset in preds.items():
        (probes / model / probe).mkdir(parents=True)
        np.savez(probes / model / probe / "test_predictions.npz", ids=np.array([r["id"] for r in rows]),
                 scores=np.array(truth) + offset)
    return prepared, probes


def test_summary_has_every_candidate_from_params_the_best_and_the_gap(tmp_path, default_params):
    default_params.update(models=["m1", "m2"], probe=["ridge", "mlp"])
    preds = {("m1", "ridge"): 0.5, ("m1", "mlp"): 0.25, ("m2", "ridge"): 1.0, ("m2", "mlp"): 2.0,
             ("stale", "ridge"): 0.0}   # on disk but not in params: must not appear
    prepared, probes = write_case(tmp_path, default_params, preds)
    summary = evaluate(prepared, probes, tmp_path / "metrics", tmp_path / "summary.json", default_params)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["best"]["model"] == "m1" and written["best"]["probe"] == "mlp"
    assert written["best"]["mae"] == pytest.approx(0.25)
    assert set(written["candidates"]) == {"m1", "m2"}
    assert written["candidates"]["m2"]["ridge"]["gap"] == pytest.approx(1.0 - 0.68)
    assert written["baseline"] == {"mae": 0.68, "measured": False, "source": default_params["baseline"]["source"]}
    per_candidate = json.loads((tmp_path / "metrics" / "m2" / "mlp.json").read_text())
    assert per_candidate["mae"] == pytest.approx(2.0) and set(per_candidate["per_dimension"]) == {"a", "b"}
    assert not (tmp_path / "metrics" / "stale").exists()
    assert summary["candidates"]["m1"]["ridge"]["mae"] == pytest.approx(0.5)


def test_predictions_for_another_split_are_refused(tmp_path, default_params):
    default_params.update(models=["m1"], probe="ridge")
    prepared, probes = write_case(tmp_path, default_params, {("m1", "ridge"): 0.0})
    path = probes / "m1" / "ridge" / "test_predictions.npz"
    np.savez(path, ids=np.array(["t3", "t2", "t1", "t0"]), scores=np.zeros((4, 2)))
    with pytest.raises(InputError, match="ids do not match"):
        evaluate(prepared, probes, tmp_path / "metrics", tmp_path / "summary.json", default_params)
    assert not (tmp_path / "summary.json").exists()
