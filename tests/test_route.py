"""Hybrid scoring (news_probes.routing, the route stage, the hybrid scorer): the rule, the choice on validation,
the costs, and the scorer calling the adapter only for routed articles."""
import json
import shutil

import numpy as np
import pytest

from helpers import REPO, write_lines
from news_probes.io import InputError, read_json, read_jsonl
from news_probes.metrics import filter_config
from news_probes.routing import choose, curve, disagreement, route_config, routed, thresholds_for, with_costs
from news_probes.scoring import RouteScorer, load_scorer, score_file
from news_probes.stages.route import route

DIMS = ["a", "b"]
FILTER = filter_config({}, DIMS)           # equal weights, threshold 4.5, high tier from 6


def synthetic(n=200, seed=0):
    """Truth on 0-10, a noisy probe and a less noisy adapter."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 10, size=(n, 2))
    probe = np.clip(truth + rng.normal(0, 1.5, size=truth.shape), 0, 10)
    adapter = np.clip(truth + rng.normal(0, 0.5, size=truth.shape), 0, 10)
    return truth, probe, adapter


def test_threshold_zero_routes_everything_and_one_above_the_range_routes_nothing():
    truth, probe, adapter = synthetic()
    values = probe.mean(axis=1)
    rows = {r["threshold"]: r for r in curve(truth, probe, adapter, values, [0.0, 10.5], FILTER)}
    adapter_mae, probe_mae = np.abs(adapter - truth).mean(), np.abs(probe - truth).mean()
    assert rows[0.0]["share_routed"] == 1.0 and rows[0.0]["mae"] == pytest.approx(adapter_mae)
    assert rows[10.5]["share_routed"] == 0.0 and rows[10.5]["mae"] == pytest.approx(probe_mae)
    assert rows[0.0]["recall_high"] == 1.0 and rows[10.5]["recall_high"] == 0.0
    ends = {r["point"]: r for r in rows.values()} | {r["point"]: r for r in curve(truth, probe, adapter, values, [],
                                                                                   FILTER)}
    assert ends["adapter alone"]["mae"] == pytest.approx(adapter_mae)
    assert ends["probe alone"]["mae"] == pytest.approx(probe_mae)
    assert routed(values, None).all()          # no threshold: every article


def test_the_choice_routes_the_fewest_articles_meeting_every_target_or_none():
    truth, probe, adapter = synthetic()
    values = probe.mean(axis=1)
    rows = curve(truth, probe, adapter, values, thresholds_for({"quantiles": 20}, values), FILTER)
    chosen = choose(rows, {"recall_high": 0.9})
    meeting = [r for r in rows if r["point"] == "threshold" and r["recall_high"] >= 0.9]
    assert chosen["share_routed"] == min(r["share_routed"] for r in meeting) < 1.0
    # a hybrid MAE within 0.0 of the adapter's is met only by routing (nearly) everything
    strict = choose(rows, {"recall_high": 0.9, "max_mae_loss": 0.0})
    assert strict["share_routed"] > chosen["share_routed"]
    assert choose(rows, {"max_mae_loss": -1.0}) is None        # nothing is 1 point better than the adapter


def test_the_chosen_threshold_depends_on_validation_only():
    truth, probe, adapter = synthetic(seed=1)
    test_truth, test_probe, test_adapter = synthetic(seed=2)
    values = probe.mean(axis=1)
    thresholds = thresholds_for({"quantiles": 20}, values)
    chosen = choose(curve(truth, probe, adapter, values, thresholds, FILTER), {"recall_high": 0.95})
    for shuffled in (test_truth[::-1], np.zeros_like(test_truth), 10 - test_truth):
        test_rows = curve(shuffled, test_probe, test_adapter, test_probe.mean(axis=1), thresholds, FILTER)
        assert any(r["threshold"] == chosen["threshold"] for r in test_rows)
    assert choose(curve(truth, probe, adapter, values, thresholds, FILTER), {"recall_high": 0.95}) == chosen


def test_costs_add_the_adapter_for_the_routed_share_to_the_probe_for_every_article():
    truth, probe, adapter = synthetic()
    rows = with_costs(curve(truth, probe, adapter, probe.mean(axis=1), [5.0], FILTER), 10.0, 100.0)
    by_point = {r["point"]: r for r in rows}
    share = by_point["threshold"]["share_routed"]
    assert by_point["threshold"]["cost_ms"] == pytest.approx(10.0 + share * 100.0)
    assert by_point["probe alone"]["cost_ms"] == 10.0 and by_point["probe alone"]["speedup"] == 10.0
    assert by_point["adapter alone"]["cost_ms"] == 100.0 and by_point["adapter alone"]["speedup"] == 1.0


def test_disagreement_is_the_sd_of_seeds_or_the_weighted_sd_of_stack_members():
    rng = np.random.default_rng(0)
    members = rng.normal(5, 1, size=(4, 30, 2))
    np.testing.assert_allclose(disagreement(members), members.std(axis=0).mean(axis=1))
    one_member = disagreement(members, np.array([0.0, 1.0, 0.0, 0.0]))
    np.testing.assert_allclose(one_member, 0.0, atol=1e-12)           # a single weighted member: no spread
    per_dimension = disagreement(members, np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=float))
    expected = (members[:2, :, 0].std(axis=0) + members[2:, :, 1].std(axis=0)) / 2
    np.testing.assert_allclose(per_dimension, expected)


@pytest.mark.parametrize("section, field", [
    ({"by": "confidence"}, "route.by"),
    ({"thresholds": "4.5"}, "route.thresholds"),          # a string is refused, never iterated
    ({"thresholds": []}, "route.thresholds"),
    ({"thresholds": {"quantiles": 0}}, "route.thresholds"),
    ({"target": {"recall_high": 1.5}}, "route.target.recall_high"),
    ({"target": {"precision": 0.9}}, "route.target"),
    ({"thresold": [1]}, "route"),
])
def test_route_params_are_checked_with_the_field(section, field):
    with pytest.raises(InputError, match=f"params.yaml: {field}: "):
        route_config({"route": section})


class FakeScreen:
    """Scores each text by the number in it (both dimensions), as a probe would."""
    dimensions = DIMS

    def predict(self, texts):
        return np.array([[float(t), float(t)] for t in texts])

    def describe(self):
        return "fake screen"


class CountingAdapter:
    """Counts its calls and the texts it scored."""

    def __init__(self):
        self.calls, self.texts = 0, []

    def predict(self, texts):
        self.calls += 1
        self.texts += list(texts)
        return np.full((len(texts), 2), 9.0)

    def describe(self):
        return "counting adapter"


def test_the_hybrid_scorer_calls_the_adapter_only_for_routed_articles(tmp_path):
    adapter = CountingAdapter()
    scorer = RouteScorer(FakeScreen(), adapter, "weighted_score", 4.5, FILTER)
    texts = ["1", "7", "4.4", "4.5", "8"]
    scores, mask = scorer.predict_routed(texts)
    assert mask.tolist() == [False, True, False, True, True]
    assert adapter.calls == 1 and adapter.texts == ["7", "4.5", "8"]
    np.testing.assert_array_equal(scores[:, 0], [1.0, 9.0, 4.4, 9.0, 9.0])
    assert scorer.timings_["routed"] == 3 and scorer.timings_["texts"] == 5
    adapter.calls, adapter.texts = 0, []
    scorer.predict_routed(["1", "2"])
    assert adapter.calls == 0                                  # nothing routed: the adapter never runs
    # score_file writes which path scored each article
    source = write_lines(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts)])
    score_file(scorer, source, tmp_path / "out.jsonl", batch_size=2, show_progress=False)
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["scored_by"] for line in lines] == ["probe", "adapter", "probe", "adapter", "adapter"]
    assert adapter.texts == ["7", "4.5", "8"]


# --- the stage, on the tiny pipeline (tiny BERT probes, tiny Qwen2 adapter) --------------------------------------

def run_route(root, params, out, **section):
    params = {**params, "route": {**params.get("route", {}), **section}}
    summary = out / "summary.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"best": {"model": "stacked", "probe": "val-weights"}}))
    dirs = {"probes": root / "probes", "stacked": root / "stacked", "adapters": root / "adapters", "summary": summary,
            "embed_meta": root / "meta", "fit": root / "fit", "finetune_metrics": root / "live" / "metrics.json"}
    return route(root / "prepared", dirs, out / "routed", out / "routing.json", out / "curve", params)


def test_the_stage_writes_the_hybrid_folder_metrics_and_curve_and_the_scorer_uses_it(tiny_pipeline, tmp_path):
    root, params = tiny_pipeline
    result = run_route(root, params, tmp_path)
    r = result["routing"]
    assert r["screen"] == "stacked/val-weights" and r["by"] == "weighted_score"
    assert set(result["latency_ms"]) == {"probe_path", "adapter"} and result["scorer"]["articles"] == 24
    assert read_json(tmp_path / "routing.json")["routing"]["threshold"] == r["threshold"]
    test_rows = (tmp_path / "curve" / "test.csv").read_text().splitlines()
    assert test_rows[0].startswith("point,threshold,share_routed,mae") and len(test_rows) > 3
    assert result["agreement"]["routed_same"] == 1.0 and result["agreement"]["max_abs_diff"] < 1e-3
    scorer = load_scorer(tmp_path / "routed")
    assert isinstance(scorer, RouteScorer) and scorer.threshold == r["threshold"]
    texts = [f"{row['title']}\n\n{row['text']}" for _, row in read_jsonl(root / "prepared" / "test.jsonl")]
    calls = []
    predict = scorer.adapter.predict
    scorer.adapter.predict = lambda batch: calls.append(len(batch)) or predict(batch)
    _, mask = scorer.predict_routed(texts)
    assert sum(calls) == mask.sum() and mask.sum() == round(r["share_routed"] * len(texts))


def test_threshold_zero_gives_the_adapter_and_above_the_range_the_probe(tiny_pipeline, tmp_path):
    root, params = tiny_pipeline
    everything = run_route(root, params, tmp_path / "all", thresholds=[0], target={})
    nothing = run_route(root, params, tmp_path / "none", thresholds=[1000], target={})
    assert everything["routing"]["share_routed"] == 1.0
    assert everything["routing"]["mae"] == pytest.approx(everything["routing"]["adapter_mae"])
    assert nothing["routing"]["share_routed"] == 0.0
    assert nothing["routing"]["mae"] == pytest.approx(nothing["routing"]["probe_mae"])


def test_changing_test_labels_does_not_move_the_chosen_threshold(tiny_pipeline, tmp_path):
    root, params = tiny_pipeline
    before = run_route(root, params, tmp_path / "before")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("*.partial"))
    rows = [row for _, row in read_jsonl(copy / "prepared" / "test.jsonl")]
    write_lines(copy / "prepared" / "test.jsonl", [{**row, "labels": [10 - v for v in row["labels"]]} for row in rows])
    after = run_route(copy, params, tmp_path / "after")
    assert after["routing"]["threshold"] == before["routing"]["threshold"]
    assert after["routing"]["mae"] != before["routing"]["mae"]


def test_uncertainty_needs_seeds_and_a_named_screen_must_exist(tiny_pipeline, tmp_path):
    root, params = tiny_pipeline
    result = run_route(root, params, tmp_path / "u", by="uncertainty", screen="tiny/mlp")
    assert result["routing"]["by"] == "uncertainty" and result["routing"]["screen"] == "tiny/mlp"
    with pytest.raises(InputError, match="route.by: .*two or more seeds.*tiny/ridge"):
        run_route(root, params, tmp_path / "r", by="uncertainty", screen="tiny/ridge")
    with pytest.raises(InputError, match="route.screen: unknown candidate 'tiny/svm'"):
        run_route(root, params, tmp_path / "s", screen="tiny/svm")


def test_without_a_baseline_the_stage_routes_nothing_and_says_so(tiny_pipeline, tmp_path):
    root, params = tiny_pipeline
    params = {**params, "finetune": {"profile": "none", "profiles": {"none": {}}}}
    result = run_route(root, params, tmp_path)
    assert result["routing"] is None and "finetune.profile is none" in result["skipped"]
    assert (tmp_path / "routed" / "NOT_ROUTED").is_file()
    assert (tmp_path / "curve" / "test.csv").read_text().startswith("point,threshold")


def test_the_default_params_route_the_validation_chosen_candidate():
    import yaml
    config = route_config(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert config["screen"] == "best" and config["by"] == "weighted_score"
    assert config["target"] == {"recall_high": 0.95, "max_mae_loss": 0.02}


def test_every_candidate_is_compared_as_the_screen_costed_from_the_stages_latencies(tiny_pipeline, tmp_path):
    from news_probes.artifacts import load_table, read_scoring
    root, params = tiny_pipeline
    run_route(root, params, tmp_path)
    screens = load_table(tmp_path / "curve", "screens")
    assert {s["screen"] for s in screens} == {"tiny/ridge", "tiny/mlp", "tiny/lightgbm", "stacked/val-weights"}
    assert [s["cost_ms"] for s in screens] == sorted(s["cost_ms"] for s in screens)
    adapter_ms = read_json(root / "live" / "metrics.json")["latency_ms"]["batched"]
    embed_ms = read_json(root / "meta" / "tiny.json")["latency_ms"]["batched"]
    fit = read_json(root / "fit" / "tiny.json")
    by_name = {s["screen"]: s for s in screens}
    ridge = by_name["tiny/ridge"]
    assert ridge["probe_ms"] == pytest.approx(embed_ms + fit["ridge"]["latency_ms"]["batched"], abs=1e-4)
    assert ridge["cost_ms"] == pytest.approx(ridge["probe_ms"] + ridge["share_routed"] * adapter_ms, abs=2e-4)
    # the stack pays for its one embedder once, and for each member probe with a weight
    members = [m["candidate"].split("/")[1] for m in read_scoring(root / "stacked")["members"]]
    expected = embed_ms + sum(fit[p]["latency_ms"]["batched"] for p in members)
    assert by_name["stacked/val-weights"]["probe_ms"] == pytest.approx(expected, abs=1e-4)
    # each screen's threshold is chosen on validation with the same targets as the stage's own
    assert by_name["stacked/val-weights"]["threshold"] == read_json(tmp_path / "routing.json")["routing"]["threshold"]
