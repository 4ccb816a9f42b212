import json

import numpy as np
import pytest

from news_probes.artifacts import save_predictions, write_scoring
from news_probes.io import InputError
from news_probes.metrics import score
from news_probes.stages.evaluate import evaluate


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


TRUTH = {"val": [[2.0, 2.0], [4.0, 4.0], [6.0, 6.0], [8.0, 8.0]],
         "test": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]}


def write_case(tmp_path, params, preds, baseline_offset=0.4):
    """Prepared val and test splits, probe predictions (truth + offset per candidate: one offset for both splits,
    or (val offset, test offset)) and the adapter's predictions for params' finetune profile (truth +
    baseline_offset). Returns (prepared, probes, adapters)."""
    prepared, probes, adapters = tmp_path / "prepared", tmp_path / "probes", tmp_path / "adapters"
    prepared.mkdir()
    ids = {}
    for split, truth in TRUTH.items():
        rows = [{"id": f"{split[0]}{i}", "title": "", "text": "x", "labels": v} for i, v in enumerate(truth)]
        (prepared / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        ids[split] = [r["id"] for r in rows]
    (prepared / "schema.json").write_text(json.dumps({"dimensions": ["a", "b"], "score_range": [0, 10]}))

    def write(folder, offsets):
        for split, offset in zip(("val", "test"), offsets):
            save_predictions(folder, split, ids[split], np.array(TRUTH[split]) + offset)

    for (model, probe), offset in preds.items():
        write(probes / model / probe, offset if isinstance(offset, tuple) else (offset, offset))
    profile = params["finetune"]["profile"]
    write(adapters / profile, (baseline_offset, baseline_offset))
    write_scoring(adapters / profile, "adapter", ["a", "b"], [0, 10], profile=profile, base="some/base-model")
    return prepared, probes, adapters


CPU_BF16 = {"device": "cpu", "isa": "avx512_bf16", "dtype": "bfloat16"}


def run_evaluate(tmp_path, prepared, probes, adapters, params):
    """evaluate, with the embed stages' meta files and the finetune metrics that carry the hardware signatures; the
    grid is params' models alone (no combined ones), the stacked candidate's predictions under probes/stacked."""
    params["combined"] = {}
    for model in params["models"]:
        (tmp_path / "embed").mkdir(exist_ok=True)
        (tmp_path / "embed" / f"{model}.json").write_text(json.dumps({"hardware": {**CPU_BF16, "model": model}}))
    (tmp_path / "finetune.json").write_text(json.dumps({"hardware": {**CPU_BF16, "dtype": "float32"}}))
    return evaluate(prepared, probes, probes / "stacked" / "val-weights", adapters, tmp_path / "metrics", tmp_path / "baseline.json",
                    tmp_path / "summary.json", params, tmp_path / "embed", tmp_path / "finetune.json")


def test_summary_has_every_candidate_from_params_the_best_and_the_gap(tmp_path, default_params):
    default_params.update(models=["m1", "m2"], probe=["ridge", "mlp"])
    preds = {("m1", "ridge"): 0.5, ("m1", "mlp"): 0.25, ("m2", "ridge"): 1.0, ("m2", "mlp"): 2.0,
             ("stacked", "val-weights"): 0.3,     # the stack stage's candidate, scored like the others
             ("stale", "ridge"): 0.0}   # on disk but not in params: must not appear
    prepared, probes, adapters = write_case(tmp_path, default_params, preds, baseline_offset=0.4)
    summary = run_evaluate(tmp_path, prepared, probes, adapters, default_params)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["best"]["model"] == "m1" and written["best"]["probe"] == "mlp"
    assert written["best"]["mae"] == pytest.approx(0.25)
    assert set(written["candidates"]) == {"m1", "m2", "stacked"}
    assert written["candidates"]["stacked"]["val-weights"]["mae"] == pytest.approx(0.3)
    # Gaps are to the measured adapter (MAE 0.4 on this split), not to the study's reference value.
    assert written["candidates"]["m2"]["ridge"]["gap"] == pytest.approx(1.0 - 0.4)
    assert written["best"]["gap"] == pytest.approx(0.25 - 0.4)
    # Each source's hardware signature, as its stage recorded it.
    assert written["hardware"] == {"embed": {m: {**CPU_BF16, "model": m} for m in ("m1", "m2")},
                                   "finetune": {**CPU_BF16, "dtype": "float32"}}
    profile = default_params["finetune"]["profile"]
    baseline = written["baseline"]
    assert baseline["mae"] == pytest.approx(0.4) and baseline["measured"] is True and baseline["split"] == "test"
    assert baseline["profile"] == profile and baseline["base"] == "some/base-model"
    assert baseline["adapter"].endswith(f"adapters/{profile}") and baseline["n_test"] == 4
    assert baseline["reference_mae"] == default_params["baseline"]["reference_mae"]
    assert baseline["reference_source"] == default_params["baseline"]["source"]
    full = json.loads((tmp_path / "baseline.json").read_text())
    assert full["per_dimension"]["a"]["mae"] == pytest.approx(0.4) and full["mae"] == baseline["mae"]
    per_candidate = json.loads((tmp_path / "metrics" / "m2" / "mlp.json").read_text())
    assert per_candidate["mae"] == pytest.approx(2.0) and set(per_candidate["per_dimension"]) == {"a", "b"}
    assert not (tmp_path / "metrics" / "stale").exists()
    assert summary["candidates"]["m1"]["ridge"]["mae"] == pytest.approx(0.5)


def test_predictions_for_another_split_are_refused(tmp_path, default_params):
    default_params.update(models=["m1"], probe="ridge")
    prepared, probes, adapters = write_case(tmp_path, default_params, {("m1", "ridge"): 0.0})
    save_predictions(probes / "m1" / "ridge", "test", ["t3", "t2", "t1", "t0"], np.zeros((4, 2)))
    with pytest.raises(InputError, match="ids do not match"):
        run_evaluate(tmp_path, prepared, probes, adapters, default_params)
    assert not (tmp_path / "summary.json").exists()


def test_a_missing_adapter_is_named_not_replaced_by_the_reference(tmp_path, default_params):
    default_params.update(models=["m1"], probe="ridge")
    prepared, probes, adapters = write_case(tmp_path, default_params, {("m1", "ridge"): 0.0})
    default_params["finetune"]["profile"] = "never-trained"
    with pytest.raises(InputError, match="no scoring.json here") as err:
        run_evaluate(tmp_path, prepared, probes, adapters, default_params)
    assert "never-trained" in str(err.value)
    assert not (tmp_path / "summary.json").exists()


def test_the_best_is_chosen_on_validation_and_the_test_pick_is_named(tmp_path, default_params):
    """m1/ridge is best on validation but not on test; m1/mlp the reverse: the summary takes the validation one."""
    default_params.update(models=["m1"], probe=["ridge", "mlp"])
    preds = {("m1", "ridge"): (0.1, 0.6), ("m1", "mlp"): (0.5, 0.2), ("stacked", "val-weights"): (0.7, 0.7)}
    prepared, probes, adapters = write_case(tmp_path, default_params, preds, baseline_offset=0.4)
    summary = run_evaluate(tmp_path, prepared, probes, adapters, default_params)
    assert (summary["best"]["model"], summary["best"]["probe"], summary["best"]["chosen_on"]) == ("m1", "ridge", "val")
    assert summary["best"]["val_mae"] == pytest.approx(0.1) and summary["best"]["mae"] == pytest.approx(0.6)
    assert summary["best"]["gap"] == pytest.approx(0.6 - 0.4)
    assert summary["test_best"] == {"model": "m1", "probe": "mlp", "mae": pytest.approx(0.2)}
    assert summary["baseline"]["val_mae"] == pytest.approx(0.4)


def test_without_a_baseline_there_is_no_gap_and_the_summary_says_so(tmp_path, default_params):
    default_params.update(models=["m1"], probe=["ridge"])
    prepared, probes, adapters = write_case(tmp_path, default_params, {("m1", "ridge"): 0.3})
    default_params["finetune"]["profile"] = "none"
    summary = run_evaluate(tmp_path, prepared, probes, adapters, default_params)
    assert summary["baseline"] == {"measured": False, "profile": "none",
                                   "reference_mae": default_params["baseline"]["reference_mae"],
                                   "reference_source": default_params["baseline"]["source"]}
    assert summary["best"]["gap"] is None and summary["candidates"]["m1"]["ridge"]["gap"] is None


def test_a_filter_weight_on_an_unknown_dimension_is_refused_with_its_field(tmp_path, default_params):
    default_params.update(models=["m1"], probe=["ridge"], filter={"weights": {"a": 1, "c": 2}})
    prepared, probes, adapters = write_case(tmp_path, default_params, {("m1", "ridge"): 0.3})
    with pytest.raises(InputError, match=r"params.yaml: filter.weights.c: no dimension 'c' in the data"):
        run_evaluate(tmp_path, prepared, probes, adapters, default_params)
    assert not (tmp_path / "summary.json").exists()
