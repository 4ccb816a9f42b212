"""`make check-metrics`: exact under the committed run's hardware signature, within tolerances under another."""
import json
import sys

from helpers import REPO, isolated_env, sh

CHECK = f"{sys.executable} {REPO / '.ci' / 'check_metrics.py'}"
BF16 = {"embed": {"m": {"device": "cpu", "isa": "avx512_bf16", "dtype": "bfloat16"}},
        "finetune": {"device": "cpu", "isa": "avx512_bf16", "dtype": "bfloat16"}}
FP32 = {"embed": {"m": {"device": "cpu", "isa": "avx2", "dtype": "float32"}},
        "finetune": {"device": "cpu", "isa": "avx2", "dtype": "float32"}}


def write_metrics(root, hardware, mae, per_dimension_mae, count=464):
    (root / "metrics" / "probes").mkdir(parents=True, exist_ok=True)
    (root / "metrics" / "summary.json").write_text(json.dumps({"best": {"mae": mae}, "hardware": hardware}))
    (root / "metrics" / "probes" / "ridge.json").write_text(json.dumps(
        {"mae": mae, "n_test": 143, "per_dimension": {"a": {"mae": per_dimension_mae}}}))
    (root / "metrics" / "data.json").write_text(json.dumps({"train": {"count": count}}))


def check(root, env):
    (root / "tolerances.yaml").write_text("tolerances:\n  overall: {mae: 0.01}\n  per_dimension: {mae: 0.05}\n")
    return sh(f"{CHECK} --tolerances tolerances.yaml metrics/summary.json metrics/probes metrics/data.json",
              root, env, check=False)


def committed_repo(tmp_path):
    env = isolated_env(tmp_path)
    root = tmp_path / "repo"
    root.mkdir()
    write_metrics(root, BF16, mae=1.15, per_dimension_mae=1.3)
    sh("git init -q && git add metrics && git commit -qm metrics", root, env)
    return root, env


def test_identical_metrics_pass_and_any_change_fails_on_the_same_hardware(tmp_path):
    root, env = committed_repo(tmp_path)
    result = check(root, env)
    assert result.returncode == 0, result.stdout
    assert "same hardware: numbers must be equal" in result.stdout and "all numbers match" in result.stdout
    write_metrics(root, BF16, mae=1.1501, per_dimension_mae=1.3)       # inside the tolerance, but same signature
    result = check(root, env)
    assert result.returncode == 1
    assert "best.mae committed 1.150000, produced 1.150100" in result.stdout and "tolerance 0)" in result.stdout


def test_other_hardware_passes_within_the_tolerance_and_names_both_signatures(tmp_path):
    root, env = committed_repo(tmp_path)
    write_metrics(root, FP32, mae=1.159, per_dimension_mae=1.34)
    result = check(root, env)
    assert result.returncode == 0, result.stdout
    assert "different hardware" in result.stdout
    assert '"isa": "avx2"' in result.stdout and '"isa": "avx512_bf16"' in result.stdout


def test_other_hardware_fails_beyond_the_tolerance_naming_every_metric_outside_it(tmp_path):
    root, env = committed_repo(tmp_path)
    write_metrics(root, FP32, mae=1.165, per_dimension_mae=1.36, count=465)
    result = check(root, env)
    assert result.returncode == 1
    out = result.stdout
    assert '"isa": "avx2"' in out and '"isa": "avx512_bf16"' in out
    assert "metrics/summary.json: best.mae committed 1.150000, produced 1.165000" in out
    assert "metrics/probes/ridge.json: mae committed" in out
    assert "per_dimension.a.mae committed 1.300000, produced 1.360000" in out and "tolerance 0.05" in out
    # Data statistics have no tolerance: they never depend on the hardware.
    assert "metrics/data.json: train.count committed 464.000000, produced 465.000000" in out


def test_every_metric_of_the_metrics_files_falls_in_a_named_group():
    sys.path.insert(0, str(REPO / ".ci"))
    from check_metrics import metric_group
    assert metric_group("candidates.m.mlp.val_mae") == ("overall", "mae")
    assert metric_group("val.mae") == ("overall", "mae")
    assert metric_group("per_dimension.a.rmse") == ("per_dimension", "rmse")
    # A summary row's figures fall in the same groups as the metrics file's own keys.
    assert metric_group("seeds.sd") == metric_group("candidates.m.mlp.seed_sd") == ("seeds", "sd")
    assert metric_group("filter.recall") == metric_group("best.recall") == ("filter", "recall")
    assert metric_group("filter.tier_recall.high") == metric_group("baseline.high_tier_recall") == \
        ("filter", "tier_recall")
    assert metric_group("filter.confusion.high.low") == ("filter", "confusion")
    assert metric_group("filter.bias.a") == ("filter", "bias")


def test_times_beside_quality_figures_are_not_compared_but_the_figures_are(tmp_path):
    root, env = committed_repo(tmp_path)
    routing = {"routing": {"mae": 1.0, "share_routed": 0.5, "cost_per_article_ms": 120.0},
               "latency_ms": {"adapter": {"batched": 170.0}}, "scorer": {"speedup": 1.4}}
    (root / "metrics" / "routing.json").write_text(json.dumps(routing))
    sh("git add metrics && git commit -qm routing", root, env)
    (root / "tolerances.yaml").write_text("tolerances: {}\nnot_compared: [latency_ms, cost_per_article_ms, scorer]\n")
    command = f"{CHECK} --tolerances tolerances.yaml metrics/summary.json metrics/routing.json"
    slower = {**routing, "routing": {**routing["routing"], "cost_per_article_ms": 150.0},
              "latency_ms": {"adapter": {"batched": 210.0}}, "scorer": {"speedup": 1.2}}
    (root / "metrics" / "routing.json").write_text(json.dumps(slower))
    assert sh(command, root, env, check=False).returncode == 0
    (root / "metrics" / "routing.json").write_text(json.dumps({**slower, "routing": {**slower["routing"],
                                                                                   "share_routed": 0.6}}))
    failed = sh(command, root, env, check=False)
    assert failed.returncode == 1 and "routing.share_routed committed 0.500000, produced 0.600000" in failed.stdout
