import copy
import json

import numpy as np
import pytest

from helpers import make_records
from news_probes.lora import LoRARegressor, NewHeadOnly, lr_factor
from news_probes.tokens import truncate_ids
from news_probes.hardware import choose_device, choose_dtype, signature


def test_head_tail_truncation_keeps_the_first_and_last_tokens():
    ids = list(range(100))
    assert truncate_ids(ids, 10, "head") == list(range(10))
    kept = truncate_ids(ids, 10, "head+tail")
    assert kept == [0, 1, 2, 3, 4, 95, 96, 97, 98, 99]
    assert truncate_ids(ids, 9, "head+tail") == [0, 1, 2, 3, 4, 96, 97, 98, 99]
    assert truncate_ids(ids[:5], 10, "head+tail") == ids[:5]
    with pytest.raises(ValueError, match="truncation must be one of"):
        truncate_ids(ids, 10, "tail")


def test_learning_rate_warms_up_then_decays():
    factors = [lr_factor(step, 4, 20) for step in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0] and factors[4] == 1.0
    assert all(a >= b for a, b in zip(factors[4:], factors[5:])) and factors[-1] == pytest.approx(1 / 16)


@pytest.fixture(scope="module")
def data():
    rows = make_records(48, seed=1)
    texts = [r["content"] for r in rows]
    y = np.array([r["labels"] for r in rows])
    return texts[:32], y[:32], texts[32:], y[32:]


def tiny_regressor(source, **overrides):
    settings = dict(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"], max_tokens=24,
                    truncation="head+tail", epochs=3, batch_size=8, lr=5e-3, warmup_steps=2, seed=0)
    return LoRARegressor(str(source), **{**settings, **overrides})


def test_lora_training_lowers_the_loss_and_keeps_the_best_epoch(tiny_qwen_dir, data):
    texts, y, val_texts, y_val = data
    model = tiny_regressor(tiny_qwen_dir, epochs=4).fit(texts, y, val_texts, y_val)
    losses = [h["train_loss"] for h in model.history_]
    assert losses[-1] < losses[0], losses
    assert model.best_val_mae_ == min(h["val_mae"] for h in model.history_)
    # Only the adapter and the head train: the base weights are frozen.
    trainable = {n for n, p in model.model_.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "score" in n for n in trainable)
    predictions = model.predict(val_texts)
    assert predictions.shape == y_val.shape and predictions.min() >= 0 and predictions.max() <= 10
    assert np.abs(predictions - y_val).mean() == pytest.approx(model.best_val_mae_, abs=1e-5)


def test_validation_every_n_steps_keeps_the_best_adapter_between_epochs(tiny_qwen_dir, data):
    texts, y, val_texts, y_val = data                      # 32 texts, batch 8: 4 steps an epoch
    seen = []
    model = tiny_regressor(tiny_qwen_dir, epochs=2, eval_steps=3).fit(texts, y, val_texts, y_val,
                                                                      on_validation=seen.append)
    # Every 3 steps and at each epoch's end (step 4 and 8), never twice at one step.
    assert [(v["step"], v["epoch"]) for v in model.validations_] == [(3, 1), (4, 1), (6, 2), (8, 2)]
    assert seen == model.validations_ and model.steps_ == 8
    maes = [v["val_mae"] for v in model.validations_]
    assert len(set(maes)) == 4 and model.best_val_mae_ == min(maes)
    assert model.best_step_ == model.validations_[maes.index(min(maes))]["step"]
    assert [h["val_mae"] for h in model.history_] == [maes[1], maes[3]]
    assert np.abs(model.predict(val_texts) - y_val).mean() == pytest.approx(model.best_val_mae_, abs=1e-5)
    with pytest.raises(ValueError, match=r"eval_steps \(0: each epoch only\) must be an integer >= 0, not -1"):
        tiny_regressor(tiny_qwen_dir, eval_steps=-1)


def test_adapter_save_reload_and_predict_are_identical(tiny_qwen_dir, data, tmp_path):
    texts, y, val_texts, y_val = data
    model = tiny_regressor(tiny_qwen_dir, epochs=1).fit(texts, y, val_texts, y_val)
    model.save(tmp_path / "adapter")
    saved = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "regressor.json"} <= saved
    assert not any(name.startswith("model") for name in saved)          # no base weights
    reloaded = LoRARegressor.load(tmp_path / "adapter")
    np.testing.assert_array_equal(reloaded.predict(val_texts), model.predict(val_texts))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_merged_adapter_scores_equal_the_unmerged_ones_and_save_keeps_the_adapter(dtype, tiny_qwen_dir, data,
                                                                                  tmp_path):
    from peft.tuners.lora import LoraLayer
    from safetensors.numpy import load_file
    texts, y, val_texts, y_val = data
    model = tiny_regressor(tiny_qwen_dir, epochs=1, dtype=dtype).fit(texts, y, val_texts, y_val)
    model.save(tmp_path / "before")
    # By default the scores are merged only where the base computes fp32: merged into bf16 weights, the LoRA
    # product is rounded to the weights' precision (what is below half their last bit is lost).
    default = model.predict(val_texts)
    layers = [m for m in model.model_.modules() if isinstance(m, LoraLayer)]
    assert model.merges_for_scoring == (dtype == "float32")
    assert layers and all(m.merged == model.merges_for_scoring for m in layers)
    # Length-sorted batches: the order of the texts does not change a text's score.
    np.testing.assert_allclose(model.predict(val_texts[::-1])[::-1], default, atol=1e-3 if dtype == "bfloat16" else 1e-5)
    unmerged = model.predict(val_texts, merged=False)
    merged = model.predict(val_texts, merged=True)
    assert all(m.merged for m in layers)
    assert np.abs(merged - unmerged).max() <= 0.01 and not np.array_equal(merged, unmerged)
    np.testing.assert_array_equal(default, merged if dtype == "float32" else unmerged)
    model.predict(val_texts, merged=True)
    model.save(tmp_path / "after")                       # unmerged first: the saved adapter is the trained one
    assert not any(m.merged for m in layers)
    before, after = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("before", "after"))
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    model.predict(val_texts, merged=True)
    model.fit(texts, y, val_texts, y_val)            # a refit builds a new model, unmerged; scoring merges it
    model.predict(val_texts, merged=True)
    assert all(m.merged for m in model.model_.modules() if isinstance(m, LoraLayer))


def test_mixed_precision_trains_with_full_precision_weights(tiny_qwen_dir, data):
    texts, y, val_texts, y_val = data
    model = tiny_regressor(tiny_qwen_dir, epochs=2, dtype="bfloat16").fit(texts, y, val_texts, y_val)
    assert model.dtype_ == "bfloat16"
    # Autocast runs the matmuls in bf16; the LoRA matrices and the head are kept and updated in fp32, the frozen
    # base weights are held in bf16 (not cast again at every matmul).
    assert {str(p.dtype) for p in model.model_.parameters() if p.requires_grad} == {"torch.float32"}
    frozen = {str(p.dtype) for n, p in model.model_.named_parameters() if not p.requires_grad and "lora_" not in n
              and "modules_to_save" not in n}
    assert frozen == {"torch.bfloat16"}
    assert np.isfinite([h["train_loss"] for h in model.history_]).all()
    with pytest.raises(ValueError, match="dtype must be one of"):
        tiny_regressor(tiny_qwen_dir, dtype="int8")


def test_stage_writes_the_adapter_predictions_and_dvclive_curves(tiny_pipeline):
    from news_probes.data import load_split
    root, params = tiny_pipeline
    adapter = root / "adapters" / "tiny"
    saved = {p.name for p in adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "regressor.json", "scoring.json",
            "test_predictions.npz"} <= saved
    with np.load(adapter / "test_predictions.npz") as predictions:
        assert predictions["ids"].tolist() == [r["id"] for r in load_split(root / "prepared", "test")]
    summary = json.loads((root / "live" / "metrics.json").read_text())
    loss = (root / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    val = (root / "live" / "plots" / "metrics" / "val" / "mae.tsv").read_text().splitlines()
    assert loss[0].split("\t") == ["step", "loss"] and len(loss) - 1 == summary["steps"]
    # each loss at the optimiser step it belongs to, numbered as the validations are (1 = after the first step)
    assert [int(line.split("\t")[0]) for line in loss[1:]] == list(range(1, summary["steps"] + 1))
    # eval_steps 3: a validation every 3 steps and at each epoch's end, each logged at its step.
    val_rows = [line.split("\t") for line in val[1:]]
    val_steps, val_maes = [int(s) for s, _ in val_rows], [float(m) for _, m in val_rows]
    epochs, steps = params["finetune"]["profiles"]["tiny"]["epochs"], summary["steps"]
    epoch_ends = {steps // epochs * e for e in range(1, epochs + 1)}
    assert val_steps == sorted(set(range(3, steps, 3)) | epoch_ends) and len(val_steps) == summary["validations"]
    assert summary["best_val_mae"] == pytest.approx(min(val_maes))
    assert summary["best_step"] == val_steps[val_maes.index(min(val_maes))]
    # dtype auto: this machine's choice, recorded with its signature.
    device = choose_device()
    assert summary["device"] == device and summary["dtype"] == choose_dtype("auto", device)
    assert summary["hardware"] == signature(device, summary["dtype"]) and summary["profile"] == "tiny"
    assert set(summary["latency_ms"]) == {"single", "batched"} and "peak_rss_mb" in summary
    assert 0 < summary["seconds_per_step"] * steps <= summary["fit_seconds"]
    assert summary["train_tokens_per_second"] > 0
    assert summary["max_tokens"] == params["finetune"]["profiles"]["tiny"]["max_tokens"]
    assert json.loads((adapter / "scoring.json").read_text())["dimensions"] == \
        json.loads((root / "prepared" / "schema.json").read_text())["dimensions"]


@pytest.mark.parametrize("change, field, message", [
    (lambda f: f.update(profile="nope"), "finetune.profile", "unknown profile 'nope'"),
    (lambda f: f["profiles"]["tiny"].update(learning_rate=0.1), "finetune.profiles.tiny", "unknown keys"),
    (lambda f: f["profiles"]["tiny"].pop("source"), "finetune.profiles.tiny", "needs a source"),
    (lambda f: f["profiles"]["tiny"].update(truncation="tail"), "finetune.profiles.tiny", "truncation must be"),
    (lambda f: f.update(profile="qwen2.5"), "finetune.profile", "contains '.'"),
])
def test_bad_profiles_are_refused_before_training(tiny_pipeline, tmp_path, change, field, message):
    """Typos, unknown keys, a missing source, bad values, and dotted names (which DVC cannot track)."""
    from news_probes.io import InputError
    from news_probes.stages.finetune import finetune
    root, params = tiny_pipeline
    params = copy.deepcopy(params)
    change(params["finetune"])
    with pytest.raises(InputError, match=message) as err:
        finetune(root / "prepared", tmp_path / "adapter", tmp_path / "live", params)
    assert err.value.field == field and not (tmp_path / "adapter").exists()


def test_the_load_report_is_dropped_only_when_it_reports_the_new_head_alone():
    import logging

    def record(message):
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1, message, None, None)

    table = "LlamaForSequenceClassification LOAD REPORT from: base\nKey          | Status  | \n-------------+---------+-\n"
    head_only = table + "score.weight | MISSING | \n\nNotes:\n- MISSING:\tthose params were newly initialized"
    assert not NewHeadOnly().filter(record(head_only))
    more = table + "score.weight | MISSING | \nmodel.layers.0.mlp.up_proj.weight | UNEXPECTED | \n"
    assert NewHeadOnly().filter(record(more))
    assert NewHeadOnly().filter(record(table + "score.weight | MISMATCH | \n"))
    assert NewHeadOnly().filter(record("some other warning"))
