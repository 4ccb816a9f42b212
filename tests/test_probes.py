import json

import numpy as np
import pytest

from news_probes.artifacts import load_predictions, read_history, read_scoring
from news_probes.io import InputError
from news_probes.probes import LightGBMProbe, MLPProbe, RidgeProbe, build_probe, load_probe, selected_probes
from news_probes.stages.probe import fit_probes


def linear_data(n=300, d=20, k=3, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.clip(5 + X @ rng.normal(size=(d, k)) * 0.5 + rng.normal(scale=noise, size=(n, k)), 0, 10)
    return X[:200], y[:200], X[200:250], y[200:250], X[250:], y[250:]


FAST = {"ridge": {}, "mlp": {"hidden": [32, 16], "epochs": 60, "patience": 5, "batch_size": 32},
        "lightgbm": {"n_estimators": 60, "early_stopping_rounds": 10, "num_leaves": 7}}


@pytest.mark.parametrize("cls", [RidgeProbe, MLPProbe, LightGBMProbe])
def test_probe_learns_saves_and_reloads_without_refitting(tmp_path, cls):
    X, y, Xv, yv, Xt, yt = linear_data()
    probe = cls(**FAST[cls.kind]).fit(X, y, Xv, yv)
    pred = probe.predict(Xt)
    assert pred.shape == yt.shape
    assert np.abs(pred - yt).mean() < np.abs(y.mean(axis=0) - yt).mean()   # beats the training mean
    probe.save(tmp_path / cls.kind)
    reloaded = load_probe(tmp_path / cls.kind)
    assert not hasattr(reloaded, "history_")
    np.testing.assert_allclose(reloaded.predict(Xt), pred, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls", [RidgeProbe, MLPProbe, LightGBMProbe])
def test_predictions_are_clipped_to_the_score_range(cls):
    X, y, Xv, yv, Xt, _ = linear_data()
    probe = cls(**FAST[cls.kind], score_range=(4.0, 6.0)).fit(X, y, Xv, yv)
    pred = probe.predict(Xt * 10)
    assert pred.min() >= 4.0 and pred.max() <= 6.0 and (pred == 6.0).any()


def test_ridge_reports_alpha_at_the_edge_of_the_grid():
    X, y, Xv, yv, _, _ = linear_data(noise=0.01)
    edge = RidgeProbe(alphas=[10, 100, 1000]).fit(X, y, Xv, yv).fit_info()
    assert edge == {"alpha": 10.0, "alpha_at_grid_edge": "low"}
    X, y, Xv, yv, _, _ = linear_data(noise=3.0)
    inside = RidgeProbe(alphas=[1e-3, 1, 30, 1e3, 1e6]).fit(X, y, Xv, yv).fit_info()
    assert inside == {"alpha": 30.0, "alpha_at_grid_edge": None}


def test_mlp_returns_the_best_epochs_weights_not_the_last():
    # Few training rows and many features: the MLP overfits, so validation MAE rises after its best
    # epoch. The returned network must score exactly the best epoch's validation MAE.
    rng = np.random.default_rng(3)
    X, Xv = rng.normal(size=(40, 50)), rng.normal(size=(40, 50))
    y, yv = rng.uniform(0, 10, size=(40, 2)), rng.uniform(0, 10, size=(40, 2))
    probe = MLPProbe(hidden=[64], dropout=0.0, lr=0.01, epochs=80, patience=15, batch_size=8).fit(X, y, Xv, yv)
    val = [h["val_mae"] for h in probe.history_]
    assert probe.best_epoch_ < len(val), "the run should continue past its best epoch"
    assert val[-1] > min(val) + 1e-3
    final_mae = np.abs(probe._predict_raw(Xv) - yv).mean()
    assert final_mae == pytest.approx(min(val), abs=1e-6)
    assert val[probe.best_epoch_ - 1] == min(val)


def test_mlp_is_deterministic_for_a_seed():
    X, y, Xv, yv, Xt, _ = linear_data()
    a = MLPProbe(**FAST["mlp"], seed=5).fit(X, y, Xv, yv).predict(Xt)
    b = MLPProbe(**FAST["mlp"], seed=5).fit(X, y, Xv, yv).predict(Xt)
    np.testing.assert_array_equal(a, b)


def test_probe_selection_accepts_a_name_or_a_list(default_params):
    default_params["probe"] = "mlp"
    assert [n for n, _ in selected_probes(default_params)] == ["mlp"]
    default_params["probe"] = ["ridge", "lightgbm"]
    assert [n for n, _ in selected_probes(default_params)] == ["ridge", "lightgbm"]
    default_params["probe"] = ["ridge", "svm"]
    with pytest.raises(InputError, match="params.yaml: probe: unknown name 'svm'"):
        selected_probes(default_params)


def test_mlp_loss_is_a_hyperparameter_and_both_losses_learn():
    X, y, Xv, yv, Xt, yt = linear_data()
    preds = {}
    for loss in ("huber", "l1"):
        preds[loss] = MLPProbe(**FAST["mlp"], loss=loss).fit(X, y, Xv, yv).predict(Xt)
        assert np.abs(preds[loss] - yt).mean() < np.abs(y.mean(axis=0) - yt).mean()
    assert np.abs(preds["huber"] - preds["l1"]).max() > 1e-3


def test_mlp_history_records_the_training_mae_not_the_loss():
    # lr 0 and no dropout: the network never changes, so each epoch's training MAE is its MAE on X.
    X, y, Xv, yv, _, _ = linear_data()
    probe = MLPProbe(hidden=[8], dropout=0.0, lr=0.0, epochs=2, patience=5, loss="huber").fit(X, y, Xv, yv)
    assert [h["train_mae"] for h in probe.history_] == pytest.approx([np.abs(probe._predict_raw(X) - y).mean()] * 2,
                                                                     rel=1e-5)


def write_prepared_and_embeddings(root):
    """A prepared folder and its embeddings from linear_data: the probe stage's inputs."""
    X, y, Xv, yv, Xt, yt = linear_data(k=2)
    prepared, emb = root / "prepared", root / "emb"
    prepared.mkdir(), emb.mkdir()
    for split, (Xs, ys) in {"train": (X, y), "val": (Xv, yv), "test": (Xt, yt)}.items():
        np.save(emb / f"{split}.npy", Xs)
        rows = [{"id": f"{split}{i}", "title": "", "text": "t", "labels": list(v)} for i, v in enumerate(ys)]
        (prepared / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (prepared / "schema.json").write_text(json.dumps({"dimensions": ["a", "b"], "score_range": [0, 10]}))
    return prepared, emb, Xt


@pytest.mark.parametrize("mlp, message", [({"loss": "mse"}, "loss must be one of huber, l1, not 'mse'"),
                                          ({"hiden": [8]}, "unexpected keyword argument 'hiden'")])
def test_probe_stage_names_the_field_of_a_bad_hyperparameter(tmp_path, default_params, mlp, message):
    prepared, emb, _ = write_prepared_and_embeddings(tmp_path)
    default_params["probes"] = {**FAST, "mlp": {**FAST["mlp"], **mlp}}
    with pytest.raises(InputError, match=f"params.yaml: probes.mlp: .*{message}"):
        fit_probes("all-MiniLM-L6-v2", prepared, emb, tmp_path / "out", tmp_path / "fit.json", default_params)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()   # nothing fitted


def test_probe_stage_writes_each_probe_and_its_predictions(tmp_path, default_params):
    prepared, emb, Xt = write_prepared_and_embeddings(tmp_path)
    default_params["probes"] = {**FAST, "mlp": {**FAST["mlp"], "seeds": [7, 9]}, "lightgbm": {**FAST["lightgbm"],
                                                                                           "seeds": 2}}
    report = fit_probes("all-MiniLM-L6-v2", prepared, emb, tmp_path / "out", tmp_path / "fit.json", default_params)
    assert set(report) == {"ridge", "mlp", "lightgbm"}
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit == json.loads(json.dumps(report))
    assert fit["ridge"]["seeds"] == [42] and fit["mlp"]["seeds"] == [7, 9] and fit["lightgbm"]["seeds"] == [42, 43]
    for name in report:
        folder = tmp_path / "out" / name
        # Each probe folder scores on its own: scoring.json names its kind, probe and embedder.
        assert read_scoring(folder) == {
            "kind": "probe", "model": "all-MiniLM-L6-v2", "probe": name,
            "embedder": default_params["embedders"]["all-MiniLM-L6-v2"], "dimensions": ["a", "b"],
            "score_range": [0, 10]}
        assert set(fit[name]["latency_ms"]) == {"single", "batched"}
        history = read_history(folder)
        assert (len(history) == fit["mlp"]["members"][0]["epochs_run"]) if name == "mlp" else history == []
        probe = load_probe(folder)
        test = load_predictions(folder, "test", [f"test{i}" for i in range(len(Xt))])
        # The candidate's predictions are the mean of its seeds' own, which are saved beside it.
        assert test["seed_scores"].shape == (len(fit[name]["seeds"]), len(Xt), 2)
        np.testing.assert_allclose(test["scores"], test["seed_scores"].mean(axis=0))
        np.testing.assert_allclose(test["scores"], probe.predict(Xt))
        np.testing.assert_allclose(test["seed_scores"], [member.predict(Xt) for member in probe.members])
        assert load_predictions(folder, "val", [f"val{i}" for i in range(50)])["scores"].shape == (50, 2)
    mlp = load_predictions(tmp_path / "out" / "mlp", "test", [f"test{i}" for i in range(len(Xt))])["seed_scores"]
    assert np.abs(mlp[0] - mlp[1]).max() > 1e-3            # two seeds, two different fits


def test_seed_counts_and_lists():
    assert build_probe("mlp", {"seeds": 3}, (0, 10), 42).seeds == [42, 43, 44]
    assert build_probe("mlp", {"seeds": [5, 1]}, (0, 10), 42).seeds == [5, 1]
    assert build_probe("mlp", {}, (0, 10), 42).seeds == [42, 43, 44, 45, 46]     # default: 5 seeds
    assert build_probe("ridge", {}, (0, 10), 42).seeds == [42]
    for seeds, message in ((3, "ridge is deterministic"), (0, "seeds must be an integer >= 1, not 0"),
                           ([1, 1], "each seed once"), ([], "seeds must be a non-empty list"),
                           ("5", "a count or a list")):
        with pytest.raises(ValueError, match=message):
            build_probe("ridge" if seeds == 3 else "mlp", {"seeds": seeds}, (0, 10), 42)


def test_a_bad_seeds_setting_names_its_field(tmp_path, default_params):
    prepared, emb, _ = write_prepared_and_embeddings(tmp_path)
    default_params["probes"] = {**FAST, "ridge": {"seeds": 2}}
    with pytest.raises(InputError, match="params.yaml: probes.ridge: ridge is deterministic"):
        fit_probes("all-MiniLM-L6-v2", prepared, emb, tmp_path / "out", tmp_path / "fit.json", default_params)


def sparse_data(n=300, vocabulary=400, k=2, seed=0):
    """A sparse matrix (a third of the cells) whose rows mix 4 topics, and scores that follow the topics: the
    signal lies in the leading singular vectors, as with tf-idf of texts about a few subjects."""
    import scipy.sparse
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(n, 4))
    dense = (topics @ rng.normal(size=(4, vocabulary))) * (rng.uniform(size=(n, vocabulary)) < 0.3)
    X = scipy.sparse.csr_matrix(dense.astype(np.float32))
    y = np.clip(5 + topics @ rng.normal(size=(4, k)), 0, 10)
    return X[:200], y[:200], X[200:250], y[200:250], X[250:], y[250:]


@pytest.mark.parametrize("name", ["ridge", "mlp", "lightgbm"])
def test_sparse_inputs_reach_ridge_as_they_are_and_the_others_through_an_svd(tmp_path, name):
    X, y, Xv, yv, Xt, yt = sparse_data()
    probe = build_probe(name, {**FAST[name], "dense_components": 16}, (0, 10), seed=3).fit(X, y, Xv, yv)
    pred = probe.predict(Xt)
    assert np.abs(pred - yt).mean() < np.abs(y.mean(axis=0) - yt).mean()   # beats the training mean
    if name == "ridge":
        assert probe.components_ is None and probe.members[0].coef_.shape == (2, 400)
    else:   # one SVD for the ensemble, fitted on the training rows: 16 components over the vocabulary
        assert probe.components_.shape == (16, 400)
    probe.save(tmp_path / name)
    assert (tmp_path / name / "reducer.npz").is_file() == (name != "ridge")
    np.testing.assert_allclose(load_probe(tmp_path / name).predict(Xt), pred, rtol=1e-5, atol=1e-6)
