import json
import re

import numpy as np
import pytest

from news_probes.comparison import GAP_VERDICTS, verdict
from news_probes.metrics import bootstrap
from news_probes.stages.report import report
from news_probes.stages.route import route


def test_bootstrap_intervals_are_seeded_and_paired():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 1.5, 200)
    errors = {"a": base, "b": base + 0.05, "c": base + rng.normal(0, 0.3, 200)}
    baseline = base - 0.1                     # a baseline better than a by exactly 0.1 on every article
    one = bootstrap(errors, list(errors), "a", baseline, 500, seed=1)
    two = bootstrap(errors, list(errors), "a", baseline, 500, seed=1)
    assert all(np.array_equal(one[c][k], two[c][k]) for c in errors for k in one[c])
    low, high = one["a"]["mae"]
    assert low < base.mean() < high
    # The gap is paired with the baseline's errors on the same articles: a constant 0.1 has no spread.
    np.testing.assert_allclose(one["a"]["gap"], [0.1, 0.1])
    np.testing.assert_allclose(one["b"]["gap"], [0.15, 0.15])
    # b is worse than a by exactly 0.05 on every article: the paired interval is that constant.
    np.testing.assert_allclose(one["b"]["to_best"], [0.05, 0.05])
    # c differs from a by noise: the paired interval straddles its mean difference and is wide.
    assert one["c"]["to_best"][0] < (errors["c"] - base).mean() < one["c"]["to_best"][1]


@pytest.mark.parametrize("gap, expected", [(-0.2, 0), (0.0, 1), (0.05, 1), (0.15, 2), (0.5, 3)])
def test_verdict_follows_the_study_thresholds(gap, expected):
    assert verdict(gap) == GAP_VERDICTS[expected][1]


def markdown_table(text, heading):
    """The first Markdown table after a heading, as a list of {column: cell} with bold marks removed."""
    lines = text[text.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("*") for cell in line.strip("|").split("|")])
    header, body = rows[0], rows[2:]
    return [dict(zip(header, row)) for row in body]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, tiny_pipeline):
    """evaluate and report on the tiny pipeline's outputs; returns (dir with inputs and outputs, test size)."""
    from news_probes.stages.evaluate import evaluate
    inputs, params = tiny_pipeline
    root = tmp_path_factory.mktemp("report")
    for name in ("meta", "data.json", "live"):
        (root / name).symlink_to(inputs / name)
    params = {**params, "report": {"bootstrap_resamples": 200}}
    evaluate(inputs / "prepared", inputs / "probes", inputs / "stacked", inputs / "adapters", root / "metrics",
             root / "baseline.json",
             root / "summary.json", params, inputs / "meta", inputs / "live" / "metrics.json")
    dirs = {"probes": inputs / "probes", "stacked": inputs / "stacked", "adapters": inputs / "adapters",
            "summary": root / "summary.json", "embed_meta": inputs / "meta", "fit": inputs / "fit",
            "finetune_metrics": inputs / "live" / "metrics.json"}
    route(inputs / "prepared", dirs, root / "routed", root / "routing.json", root / "routing_curve", params)
    run_report(inputs, root, params)
    return root, json.loads((root / "data.json").read_text())["test"]["count"]


def run_report(inputs, root, params, out="comparison.md", plots="plots"):
    return report(inputs / "prepared", inputs / "probes", inputs / "stacked", inputs / "stack.json",
                  inputs / "adapters", root / "metrics",
                  root / "baseline.json", root / "summary.json", inputs / "live" / "metrics.json", inputs / "meta",
                  inputs / "fit", inputs / "data.json", root / "routing.json", root / "routing_curve", root / out,
                  root / plots, params)


def test_report_numbers_equal_the_metrics_files(small_run, tiny_pipeline):
    root, _ = small_run
    tiny_inputs = tiny_pipeline[0]
    text = (root / "comparison.md").read_text()
    summary = json.loads((root / "summary.json").read_text())
    rows = markdown_table(text, "## Summary")
    cands = summary["candidates"]
    assert [(r["model"], r["probe"]) for r in rows] == sorted(
        ((m, p) for m in cands for p in cands[m]), key=lambda c: cands[c[0]][c[1]]["val_mae"])  # the selection's order
    assert set(cands) == {"tiny", "stacked"}
    baseline = summary["baseline"]["mae"]
    for row in rows:
        m = json.loads((root / "metrics" / row["model"] / f"{row['probe']}.json").read_text())
        assert float(row["MAE"]) == pytest.approx(m["mae"], abs=5e-4)
        assert float(row["val MAE"]) == pytest.approx(m["val"]["mae"], abs=5e-4)
        if "seeds" not in m or m["seeds"]["n"] == 1:
            assert row["seed sd"] == "—"                # one seed (ridge) or none (the stack): no spread to show
        else:
            assert float(row["seed sd"]) == pytest.approx(m["seeds"]["sd"], abs=5e-4)
        assert float(row["RMSE"]) == pytest.approx(m["rmse"], abs=5e-4)
        assert float(row["Spearman"]) == pytest.approx(m["spearman"], abs=5e-4)
        assert float(row["gap"]) == pytest.approx(m["mae"] - baseline, abs=5e-4)
        assert float(row["gap %"].rstrip("%")) == pytest.approx(100 * (m["mae"] - baseline) / baseline, abs=0.05)
        low, high = map(float, row["MAE 95% CI"].strip("[]").split(","))
        assert low <= m["mae"] <= high
        heading = f"### {row['model']} / {row['probe']}"        # the best and the next two have one
        for dim_row in markdown_table(text, heading) if heading in text else []:
            per = m["per_dimension"][dim_row["dimension"]]
            assert float(dim_row["MAE"]) == pytest.approx(per["mae"], abs=5e-4)
            assert float(dim_row["Spearman"]) == pytest.approx(per["spearman"], abs=5e-4)
    best = summary["best"]
    assert (f"| **{best['model']}** | **{best['probe']}** | **{best['val_mae']:.3f}** | **{best['mae']:.3f}** |"
            in text)
    assert (f"Best overall, chosen on validation: **{best['model']} / {best['probe']}** (validation MAE "
            f"{best['val_mae']:.3f}, "
            f"test MAE {best['mae']:.3f}, gap {best['gap']:+.3f})") in text
    for row in markdown_table(text, "## Filtering"):
        if row["candidate"].startswith("tiny / "):
            f = json.loads((root / "metrics" / "tiny" / f"{row['candidate'][7:]}.json").read_text())["filter"]
            assert float(row["recall"]) == pytest.approx(f["recall"], abs=5e-4)
            assert float(row["high-tier recall"]) == pytest.approx(f["tier_recall"]["high"], abs=5e-4)
            assert float(row["weighted MAE"]) == pytest.approx(f["weighted_mae"], abs=5e-4)
    assert "Best linear probe: tiny / ridge" in text
    measured = json.loads((root / "baseline.json").read_text())
    assert measured["mae"] == baseline and measured["profile"] == "tiny"
    base_rows = markdown_table(text, "## Baseline")
    assert base_rows[0]["baseline"].startswith("fine-tuned: tiny") and base_rows[0]["split"] == "test (measured)"
    assert float(base_rows[0]["MAE"]) == pytest.approx(measured["mae"], abs=5e-4)
    assert float(base_rows[0]["RMSE"]) == pytest.approx(measured["rmse"], abs=5e-4)
    assert float(base_rows[1]["MAE"]) == pytest.approx(measured["reference_mae"], abs=5e-4)
    for dim_row in markdown_table(text, "### fine-tuned / tiny"):
        assert float(dim_row["MAE"]) == pytest.approx(measured["per_dimension"][dim_row["dimension"]]["mae"], abs=5e-4)
    tuning = json.loads((root / "live" / "metrics.json").read_text())
    tuned_row = markdown_table(text, "Fine-tuning (the finetune stage")[0]
    assert tuned_row["steps"] == str(tuning["steps"]) and tuned_row["training"] == f"{tuning['fit_seconds']:.0f} s"
    assert tuned_row["scoring, 1 article"] == f"{tuning['latency_ms']['single']:.1f} ms"
    efficiency = markdown_table(text, "## Efficiency")
    assert {r["probe"] for r in efficiency} == {"ridge", "mlp", "lightgbm"}
    meta = json.loads((root / "meta" / "tiny.json").read_text())
    fits = json.loads((tiny_inputs / "fit" / "tiny.json").read_text())
    for r in efficiency:
        probe = fits[r["probe"]]["latency_ms"]
        assert r["embedding / 1,000 articles"] == f"{1000 * meta['seconds'] / meta['texts']:.1f} s"
        assert r["embedder precision"] == f"{meta['dtype']} ({meta['backend']}) on {meta['device']}"
        assert r["encoding, 1 article"] == f"{meta['latency_ms']['single']:.1f} ms"
        assert r["probe alone, 1 article"] == f"{probe['single']:.3f} ms"
        # Scoring one article costs encoding it plus the probe, both as their stages measured them.
        assert r["scoring, 1 article"] == f"{meta['latency_ms']['single'] + probe['single']:.1f} ms"
    assert f"tiny (32-d, {meta['dtype']} ({meta['backend']}) on {meta['device']}, 32-token window" in text
    weights = json.loads((tiny_inputs / "stack.json").read_text())["weights"]
    shown = {r["candidate"]: float(r["weight"]) for r in markdown_table(text, "## Stacked candidate")}
    assert shown == pytest.approx({c: w for c, w in weights.items() if w > 0}, abs=6e-4)   # shown to 3 decimals


def test_report_writes_every_plot(small_run):
    root, n_test = small_run
    for name in ("per_dimension_mae.csv", "gap.csv", "predicted_vs_actual.csv", "abs_error.csv",
                 "mlp_training.csv", "png/per_dimension_mae.png", "png/gap.png", "png/predicted_vs_actual.png",
                 "png/abs_error.png", "png/mlp_training.png", "png/finetune_training.png", "png/routing.png"):
        assert (root / "plots" / name).stat().st_size > 0, name
    assert (root / "plots" / "png" / "gap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    n_candidates, n_dimensions = 4, 3           # 3 probes and the stack; the baseline is one more row in the
                                                # error and per-dimension data
    assert len((root / "plots" / "abs_error.csv").read_text().splitlines()) == 1 + (n_candidates + 1) * n_test
    assert len((root / "plots" / "gap.csv").read_text().splitlines()) == 1 + n_candidates
    assert len((root / "plots" / "per_dimension_mae.csv").read_text().splitlines()) == 1 + (n_candidates + 1) * n_dimensions
    assert len((root / "plots" / "predicted_vs_actual.csv").read_text().splitlines()) == 1 + n_dimensions * n_test


def test_report_is_the_same_bytes_from_the_same_inputs(small_run, tiny_pipeline):
    root, _ = small_run
    inputs, params = tiny_pipeline
    run_report(inputs, root, {**params, "report": {"bootstrap_resamples": 200}}, out="again.md", plots="again")
    # the same bytes but for the charts' folder, which the report's image links name
    again = (root / "again.md").read_text().replace("](again/png/", "](plots/png/")
    assert again.encode() == (root / "comparison.md").read_bytes() and "](plots/png/" in again
    for first in (root / "plots").rglob("*.*"):
        assert (root / "again" / first.relative_to(root / "plots")).read_bytes() == first.read_bytes(), first.name


def report_with_summary(small_run, tiny_pipeline, tmp_path, change):
    """The report written from small_run's files but a summary changed by change(summary, other probe); returns
    (the report's text, the other probe's name, the original summary)."""
    root, _ = small_run
    inputs, params = tiny_pipeline
    summary = json.loads((root / "summary.json").read_text())
    other = next(p for p in summary["candidates"]["tiny"] if p != summary["best"]["probe"])
    for name in ("metrics", "baseline.json", "routing.json", "routing_curve"):
        (tmp_path / name).symlink_to(root / name)
    (tmp_path / "summary.json").write_text(json.dumps(change(summary, other)))
    run_report(inputs, tmp_path, {**params, "report": {"bootstrap_resamples": 200}})
    return (tmp_path / "comparison.md").read_text(), other, summary


def test_report_names_the_best_candidate_that_evaluate_chose(small_run, tiny_pipeline, tmp_path):
    """The report reads summary.best; it does not re-derive it from the metrics."""
    text, other, _ = report_with_summary(small_run, tiny_pipeline, tmp_path, lambda summary, other: {
        **summary, "best": {**summary["candidates"]["tiny"][other], "model": "tiny", "probe": other}})
    assert f"Best overall, chosen on validation: **tiny / {other}**" in text and f"| **tiny** | **{other}** |" in text


def test_report_names_the_test_splits_own_pick_when_it_differs(small_run, tiny_pipeline, tmp_path):
    text, other, summary = report_with_summary(small_run, tiny_pipeline, tmp_path, lambda summary, other: {
        **summary, "test_best": {"model": "tiny", "probe": other, "mae": summary["candidates"]["tiny"][other]["mae"]}})
    mae = summary["candidates"]["tiny"][other]["mae"]
    assert f"the test split alone would have picked **tiny / {other}** (test MAE {mae:.3f}" in text


def test_report_routing_section_equals_the_route_stage_metrics(small_run):
    root, n_test = small_run
    text = (root / "comparison.md").read_text()
    routing = json.loads((root / "routing.json").read_text())
    r = routing["routing"]
    rows = markdown_table(text, "## Hybrid scoring")
    assert rows[0]["threshold"] == "(probe alone)" and rows[-1]["threshold"] == "(adapter alone)"
    assert float(rows[-1]["MAE"]) == pytest.approx(r["adapter_mae"], abs=5e-4)
    assert float(rows[0]["MAE"]) == pytest.approx(r["probe_mae"], abs=5e-4)
    chosen = [row for row in rows if row["threshold"] == f"{r['threshold']:.3f}"]
    assert float(chosen[0]["MAE"]) == pytest.approx(r["mae"], abs=5e-4)
    assert float(chosen[0]["cost, batched"].split()[0]) == pytest.approx(r["cost_per_article_ms"], abs=0.05)
    s = routing["scorer"]
    assert (f"the hybrid scored the {n_test} test articles in {s['hybrid_ms_per_article']:.1f} ms per article "
            f"({s['routed']} routed), the adapter alone in {s['adapter_ms_per_article']:.1f} ms") in text
    assert "![hybrid routing trade-off](plots/png/routing.png)" in text


def test_the_report_embeds_every_chart_it_wrote_and_opens_with_the_answer(small_run, tiny_pipeline):
    root, n_test = small_run
    text = (root / "comparison.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    # each chart once, by a path relative to the report (the test writes it beside plots/)
    assert sorted(images) == sorted(f"plots/png/{p.name}" for p in (root / "plots" / "png").glob("*.png"))
    assert all((root / image).is_file() for image in images)
    summary = json.loads((root / "summary.json").read_text())
    best, baseline = summary["best"], summary["baseline"]
    answer = text.split("## The answer\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(answer) == 5 and text.index("## The answer") < text.index("- Dataset:")
    assert answer[0].startswith(f"1. **What won:** {best['model']} / {best['probe']}, chosen on validation "
                                f"(MAE {best['val_mae']:.3f}), test MAE {best['mae']:.3f} on {n_test} test articles")
    assert f"{best['gap']:+.3f} MAE against the fine-tuned adapter's {baseline['mae']:.3f}" in answer[1]
    tuning = json.loads((tiny_pipeline[0] / "live" / "metrics.json").read_text())
    assert answer[4].startswith("5. **At what cost:** scoring ") and "ms an article (batched, encoding included)" in answer[4]
    assert (f"the adapter {tuning['latency_ms']['batched']:.1f} ms an article and {tuning['fit_seconds']:.0f} s of "
            f"fine-tuning") in answer[4]


def test_a_constant_dimension_is_named_not_silently_dropped_from_the_spearman_mean():
    from news_probes.comparison import summary_section
    per_dimension = {"a": {"spearman": 0.5}, "b": {"spearman": None}}
    row = {"val": {"mae": 1.0}, "mae": 1.0, "rmse": 1.2, "spearman": 0.5, "gap": None, "per_dimension": per_dimension}
    c = ("m", "ridge")
    run = {"results": {c: row}, "order": [c], "best": c, "baseline": {"measured": False},
           "ci": {c: {"mae": [0.9, 1.1]}}}
    text = "\n".join(summary_section(run))
    assert "undefined where the truth or the predictions are constant, here for m / ridge: b." in text
    row["per_dimension"]["b"]["spearman"] = 0.1
    assert "Spearman is the mean" not in "\n".join(summary_section(run))       # said only where it applies
