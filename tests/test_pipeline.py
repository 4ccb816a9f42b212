"""End to end: the real `dvc repro` and `dvc exp run` in a throw-away copy of the repository."""
import json

import pytest
import yaml

from helpers import isolated_env, make_project, sh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, tiny_qwen_dir):
    """A project copy after one `dvc repro`, committed and tagged `reproduced`; returns (work, env, output)."""
    root = tmp_path_factory.mktemp("pipeline")
    env = isolated_env(root)
    work = make_project(root / "repo", env, tiny_qwen_dir)
    out = sh("dvc repro", work, env)
    sh("git add -A && git commit -qm run && git tag reproduced", work, env)
    return work, env, out


@pytest.fixture
def repo(reproduced):
    """The reproduced state, whatever an earlier test did: main at the tag, workspace and DVC outputs restored."""
    work, env, _ = reproduced
    sh("git checkout -q -f main && git reset -q --hard reproduced && git clean -qfd && dvc checkout -q --force",
       work, env)
    return work, env


def read(work, path):
    return json.loads((work / path).read_text())


def test_repro_fits_the_whole_grid_and_is_deterministic(reproduced, repo):
    work, env = repo
    out = reproduced[2]
    for stage in ("prepare", "embed@all-MiniLM-L6-v2", "probe@all-MiniLM-L6-v2", "finetune", "evaluate", "route",
                  "report"):
        assert f"Running stage '{stage}'" in out
    summary = read(work, "metrics/summary.json")
    assert set(summary["candidates"]["all-MiniLM-L6-v2"]) == {"ridge", "mlp", "lightgbm"}
    for probe, m in summary["candidates"]["all-MiniLM-L6-v2"].items():
        assert 0 < m["mae"] <= m["rmse"] and -1 <= m["spearman"] <= 1
        detail = read(work, f"metrics/probes/all-MiniLM-L6-v2/{probe}.json")
        assert detail["mae"] == m["mae"] and detail["n_test"] == 16
    assert read(work, "metrics/embed/all-MiniLM-L6-v2.json")["dimension"] == 384
    assert read(work, "metrics/data.json")["test"]["count"] == 16
    best = summary["best"]
    assert (f"Best overall, chosen on validation: **{best['model']} / {best['probe']}** (validation MAE "
            f"{best['val_mae']:.3f}, test MAE {best['mae']:.3f}") in (work / "reports/comparison.md").read_text()
    # The baseline is the adapter trained and scored here, its provenance written out; gaps are to it.
    baseline = read(work, "metrics/baseline.json")
    assert summary["baseline"]["mae"] == baseline["mae"] and baseline["profile"] == "tiny"
    assert baseline["measured"] and baseline["split"] == "test" and baseline["n_test"] == 16
    assert baseline["adapter"] == "models/adapters/tiny" and summary["baseline"]["reference_mae"] == 0.68
    assert best["gap"] == pytest.approx(best["mae"] - baseline["mae"])
    adapter = {p.name for p in (work / "models/adapters/tiny").iterdir()}
    assert "adapter_model.safetensors" in adapter and "model.safetensors" not in adapter
    assert read(work, "metrics/finetune/metrics.json")["steps"] > 0
    shown = sh("dvc plots show -o plots_html", work, env)
    assert "index.html" in shown and len(list((work / "plots_html" / "static").glob("*.png"))) == 7
    page = (work / "plots_html" / "index.html").read_text()
    assert "finetune_loss" in page and "finetune_val_mae" in page and "routing_mae" in page
    # The hybrid: chosen on validation, its curve, and the scorer that runs it on new articles.
    routing = read(work, "metrics/routing.json")["routing"]
    assert routing["screen"] == f"{best['model']}/{best['probe']}" and routing["adapter_mae"] == baseline["mae"]
    assert 0 <= routing["share_routed"] <= 1 and routing["cost_per_article_ms"] > 0
    assert len((work / "metrics/routing_curve/test.csv").read_text().splitlines()) > 3
    scored = sh("news-probes score models/routed --input data/prepared/test.jsonl", work, env)
    paths = [json.loads(line)["scored_by"] for line in scored.splitlines() if line.startswith("{")]
    assert len(paths) == 16 and paths.count("adapter") == round(16 * routing["share_routed"])

    assert "didn't change" in sh("dvc repro", work, env)   # nothing left to run
    sh("dvc repro -f", work, env)
    assert read(work, "metrics/summary.json") == summary
    # Byte-identical quality metrics and outputs; only the timing files (embed, fit) may change.
    assert sh("git status --porcelain metrics/summary.json metrics/probes metrics/data.json", work, env) == ""
    assert "up to date" in sh("dvc status", work, env)


def test_a_second_repro_runs_nothing_and_the_report_is_rewritten_byte_for_byte(repo):
    work, env = repo
    out = sh("dvc repro", work, env)
    assert "Running stage" not in out and "didn't change" in out
    # The report measures nothing: run again on the same inputs, it writes the same bytes (report and plots).
    assert "Running stage 'report'" in sh("dvc repro -f --single-item report", work, env)
    assert sh("git status --porcelain reports plots", work, env) == ""


def test_editing_the_encode_code_reruns_embed_but_not_finetune(repo):
    work, env = repo
    with open(work / "news_probes" / "embedders.py", "a") as f:
        f.write("\n# an edit\n")
    status = sh("dvc status", work, env)
    assert "embed@all-MiniLM-L6-v2:" in status and "news_probes/embedders.py" in status
    assert "finetune" not in status
    out = sh("dvc repro", work, env)
    assert "Running stage 'embed@all-MiniLM-L6-v2'" in out and "Running stage 'finetune'" not in out
    # The same embeddings (a comment changed): DVC skips the probes, and the metrics stay as they were.
    assert "Running stage 'probe@all-MiniLM-L6-v2'" not in out
    assert sh("git status --porcelain metrics/summary.json metrics/probes", work, env) == ""


def test_exp_run_probe_mlp_reuses_the_embeddings(repo):
    work, env = repo
    out = sh("dvc exp run -S probe=mlp", work, env)
    assert "Running stage 'embed@" not in out and "Running stage 'probe@all-MiniLM-L6-v2'" in out
    summary = read(work, "metrics/summary.json")
    assert list(summary["candidates"]["all-MiniLM-L6-v2"]) == ["mlp"]


def test_changing_a_probe_hyperparameter_reruns_no_embed_or_finetune_stage(repo):
    work, env = repo
    out = sh("dvc exp run -S probes.ridge.alphas=[0.1,1,10]", work, env)
    assert "Running stage 'embed@" not in out and "Running stage 'probe@all-MiniLM-L6-v2'" in out
    assert "Running stage 'finetune'" not in out


def test_changing_finetune_settings_reruns_no_embed_or_probe_stage(repo):
    work, env = repo
    before = read(work, "metrics/baseline.json")["mae"]
    out = sh("dvc exp run -S finetune.profiles.tiny.lr=0.02", work, env)
    assert "Running stage 'finetune'" in out and "Running stage 'evaluate'" in out
    assert "Running stage 'embed@" not in out and "Running stage 'probe@" not in out
    assert read(work, "metrics/baseline.json")["mae"] != before


def test_settings_of_an_unselected_profile_are_no_dependency(repo):
    work, env = repo
    assert "didn't change" in sh("dvc exp run -S finetune.profiles.tiny-b.lr=0.5", work, env)


def test_switching_profile_is_one_command(repo):
    work, env = repo
    out = sh("dvc exp run -S finetune.profile=tiny-b", work, env)
    assert "Running stage 'finetune'" in out and "Running stage 'probe@" not in out
    baseline = read(work, "metrics/baseline.json")
    assert baseline["profile"] == "tiny-b" and baseline["adapter"] == "models/adapters/tiny-b"
    assert (work / "models/adapters/tiny-b/adapter_model.safetensors").is_file()
    assert "fine-tuned: tiny-b" in (work / "reports/comparison.md").read_text()


def test_review_and_plots_diff_show_a_committed_params_change(repo):
    work, env = repo
    sh("git checkout -q -b wider-mlp", work, env)
    before = read(work, "metrics/summary.json")["candidates"]["all-MiniLM-L6-v2"]["mlp"]["mae"]
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["probes"]["mlp"]["hidden"] = [64]
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("dvc repro && git add -A && git commit -qm 'wider mlp'", work, env)
    after = read(work, "metrics/summary.json")["candidates"]["all-MiniLM-L6-v2"]["mlp"]["mae"]
    assert after != before

    # The venv is the one running these tests: `-o install` skips the Makefile's own set-up.
    review = sh("make -s -o install review BASE=main", work, env)
    assert "probes.mlp.hidden" in review and "[64]" in review
    mlp_row = next(line for line in review.splitlines() if "candidates.all-MiniLM-L6-v2.mlp.mae" in line)
    assert f"{before:.4f}" in mlp_row and f"{after:.4f}" in mlp_row
    assert "candidates.all-MiniLM-L6-v2.ridge.mae" not in review   # unchanged rows stay out

    sh("dvc plots diff main -o diff_html", work, env)
    page = (work / "diff_html" / "index.html").read_text()
    for plot in ("per_dimension_mae", "gap_vs_baseline", "predicted_vs_actual", "abs_error", "mlp_training",
                 "finetune_loss", "finetune_val_mae", "routing_mae", "routing_recall", "routing_cost"):
        assert plot in page, plot
    static = {p.name for p in (work / "diff_html" / "static").glob("*.png")}
    assert static == {f"{rev}_plots_png_{chart}.png" for rev in ("main", "workspace")
                      for chart in ("per_dimension_mae", "gap", "predicted_vs_actual", "abs_error", "mlp_training",
                                    "finetune_training", "routing")}


def test_no_baseline_runs_end_to_end_and_says_so(repo):
    work, env = repo
    out = sh("dvc exp run -S finetune.profile=none", work, {**env, "NEWS_PROBES_LOG_LEVEL": "INFO"})  # as users see it
    assert "finetune.profile is none, no adapter trained" in out
    assert "Running stage 'probe@" not in out and "Running stage 'embed@" not in out
    assert (work / "models/adapters/none/NO_BASELINE").is_file()
    assert not (work / "models/adapters/none/adapter_model.safetensors").exists()
    summary = read(work, "metrics/summary.json")
    assert summary["baseline"]["measured"] is False and summary["best"]["gap"] is None
    assert summary["hardware"]["finetune"] is None
    report = (work / "reports/comparison.md").read_text()
    assert "Baseline: **none measured**" in report and "no baseline was measured" in report
    assert "2. **By how much:** no baseline was measured (`finetune.profile: none`): no gap to fine-tuning." in report
    assert not (work / "plots/png/gap.png").exists() and not (work / "plots/png/finetune_training.png").exists()
    assert "Skipped: finetune.profile is none: no adapter to route to." in report
    assert read(work, "metrics/routing.json")["routing"] is None and not (work / "plots/png/routing.png").exists()
    diff = sh("dvc metrics diff main --targets metrics/summary.json", work, env)
    assert "baseline.measured" in diff and "candidates.all-MiniLM-L6-v2.mlp.gap" in diff


def test_adding_a_combined_entry_reuses_the_cached_embeddings(repo):
    work, env = repo
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["combined"]["tfidf+all-MiniLM-L6-v2"] = ["tfidf", "all-MiniLM-L6-v2"]
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh("dvc repro", work, env)
    assert "Running stage 'combine@tfidf+all-MiniLM-L6-v2'" in out
    assert "Running stage 'probe-combined@tfidf+all-MiniLM-L6-v2'" in out
    # Nothing is embedded again, and the probes and combinations already fitted are not refitted.
    assert "Running stage 'embed@" not in out and "Running stage 'probe@" not in out
    assert "Running stage 'combine@all-MiniLM-L6-v2+tfidf'" not in out
    assert "Running stage 'stack'" in out and "Running stage 'evaluate'" in out
    meta = {m: read(work, f"metrics/embed/{m}.json") for m in ("tfidf", "all-MiniLM-L6-v2", "tfidf+all-MiniLM-L6-v2")}
    assert meta["tfidf+all-MiniLM-L6-v2"]["dimension"] == meta["tfidf"]["dimension"] + 384
    assert set(read(work, "metrics/summary.json")["candidates"]["tfidf+all-MiniLM-L6-v2"]) == {
        "ridge", "mlp", "lightgbm"}
    weights = read(work, "metrics/stack.json")["weights"]
    assert len(weights) == 4 * 3 and sum(weights.values()) == pytest.approx(1, abs=1e-3)
