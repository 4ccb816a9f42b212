import json

import numpy as np
import pytest

from report import GAP_VERDICTS, bootstrap, report, verdict


def test_bootstrap_intervals_are_seeded_and_paired():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 1.5, 200)
    errors = {"a": base, "b": base + 0.05, "c": base + rng.normal(0, 0.3, 200)}
    one = bootstrap(errors, list(errors), "a", 0.68, 500, seed=1)
    two = bootstrap(errors, list(errors), "a", 0.68, 500, seed=1)
    assert all(np.array_equal(one[c][k], two[c][k]) for c in errors for k in one[c])
    low, high = one["a"]["mae"]
    assert low < base.mean() < high
    np.testing.assert_allclose(one["a"]["gap"], one["a"]["mae"] - 0.68)
    # b is worse than a by exactly 0.05 on every article: the paired interval is that constant.
    np.testing.assert_allclose(one["b"]["to_best"], [0.05, 0.05])
    # c differs from a by noise: the paired interval straddles its mean difference and is wide.
    assert one["c"]["to_best"][0] < (errors["c"] - base).mean() < one["c"]["to_best"][1]


@pytest.mark.parametrize("gap, expected", [(0.05, 0), (0.15, 1), (0.5, 2), (-0.2, 0)])
def test_verdict_follows_the_study_thresholds(gap, expected):
    assert verdict(gap) == GAP_VERDICTS[expected][1]


def test_report_from_a_small_run(tmp_path, default_params):
    from test_probes import linear_data
    from probe import fit_probes
    X, y, Xv, yv, Xt, yt = linear_data(k=2)
    prepared, emb = tmp_path / "prepared", tmp_path / "emb" / "m"
    prepared.mkdir(), emb.mkdir(parents=True)
    counts = {}
    for split, (Xs, ys) in {"train": (X, y), "val": (Xv, yv), "test": (Xt, yt)}.items():
        np.save(emb / f"{split}.npy", Xs)
        rows = [{"id": f"{split}{i}", "title": "", "text": "t", "labels": list(v)} for i, v in enumerate(ys)]
        (prepared / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        counts[split] = {"count": len(rows)}
    (prepared / "schema.json").write_text(json.dumps({"dimensions": ["a", "b"], "score_range": [0, 10]}))
    (tmp_path / "data.json").write_text(json.dumps(counts))
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "m.json").write_text(json.dumps({"dimension": 20, "texts": 300, "seconds": 3.0,
                                                           "truncated_share": 0.0}))
    default_params.update(models=["m"], probes={"ridge": {}, "mlp": {"hidden": [16], "epochs": 20},
                                                "lightgbm": {"n_estimators": 30}})
    default_params["report"] = {"bootstrap_resamples": 200}
    fit_probes(prepared, emb, tmp_path / "probes" / "m", tmp_path / "fit" / "m.json", default_params)
    results, ci = report(prepared, tmp_path / "emb", tmp_path / "probes", tmp_path / "meta", tmp_path / "fit",
                         tmp_path / "data.json", tmp_path / "comparison.md", tmp_path / "plots", default_params)
    text = (tmp_path / "comparison.md").read_text()
    order = sorted(results, key=lambda c: results[c]["mae"])
    best = order[0]
    assert f"| **m** | **{best[1]}** | **{results[best]['mae']:.3f}** |" in text
    positions = [text.index(f"| m | {c[1]} | {results[c]['mae']:.3f} |") for c in order[1:]]
    assert positions == sorted(positions) and text.index(f"**{best[1]}**") < positions[0]
    assert "a declared reference value" in text and "## Efficiency (measured in this run)" in text
    assert "Best linear probe: m / ridge" in text
    for name in ("per_dimension_mae.csv", "gap.csv", "predicted_vs_actual.csv", "abs_error.csv",
                 "mlp_training.csv", "png/per_dimension_mae.png", "png/mlp_training.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 0, name
    assert len((tmp_path / "plots" / "abs_error.csv").read_text().splitlines()) == 1 + 3 * len(yt)
