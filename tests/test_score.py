import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, make_records, write_lines
from embedders import model_input
from common import latency
from hardware import choose_dtype
from score import Scorer, read_articles, score_file

@pytest.fixture(scope="module")
def trained(tiny_pipeline):
    return tiny_pipeline[0]


def test_scores_match_the_probe_on_the_embeddings_and_stay_in_range(trained, tmp_path):
    # New articles in the generic shape, without labels.
    articles = [{"id": f"n{i}", "title": "News", "text": r["content"]} for i, r in enumerate(make_records(7, seed=3))]
    source = write_lines(tmp_path / "new.jsonl", articles)
    scorer = Scorer(trained / "probes" / "tiny" / "ridge")
    assert score_file(scorer, source, tmp_path / "scored.jsonl", batch_size=3, show_progress=False) == 7
    lines = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [f"n{i}" for i in range(7)]
    assert all(list(line["scores"]) == ["wellbeing", "cohesion", "justice"] for line in lines)
    expected = scorer.probe.predict(scorer.embedder.encode([model_input(a) for a in read_articles(source)], False))
    got = np.array([list(line["scores"].values()) for line in lines])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert got.min() >= 0 and got.max() <= 10


def test_latency_reports_single_and_batched_seconds(trained):
    scorer = Scorer(trained / "probes" / "tiny" / "mlp")
    timing = latency(scorer.predict, ["clinic water school", "peace farm"] * 4, repeats=3)
    assert timing["single"] > 0 and timing["batched"] > 0


def test_command_scores_a_file_and_refuses_bad_input(trained, tmp_path):
    good = write_lines(tmp_path / "good.jsonl", [{"id": 1, "content": "clinic water"}, {"id": 2, "text": "farm"}])
    cmd = [sys.executable, REPO / "stages/score.py", "--model", "tiny", "--probe", "lightgbm",
           "--probes", trained / "probes"]
    done = subprocess.run(cmd + ["--input", good, "--output", tmp_path / "out.jsonl"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"scored 2 articles with tiny / lightgbm ({choose_dtype('auto', 'cpu')} on cpu)" in done.stdout
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    forced = subprocess.run(cmd + ["--input", good, "--output", tmp_path / "fp32.jsonl", "--dtype", "float32"],
                            capture_output=True, text=True)
    assert forced.returncode == 0 and "(float32 on cpu)" in forced.stdout, forced.stderr

    bad = write_lines(tmp_path / "bad.jsonl", [{"id": 1, "content": "clinic"}, {"id": 2, "content": "  "}])
    failed = subprocess.run(cmd + ["--input", bad, "--output", tmp_path / "bad-out.jsonl"],
                            capture_output=True, text=True)
    assert failed.returncode == 2 and f"error: {bad}:2: content: missing or empty text" in failed.stderr
    assert not (tmp_path / "bad-out.jsonl").exists()

    missing = subprocess.run(cmd[:5] + ["svm", "--probes", trained / "probes", "--input", good, "--output",
                                        tmp_path / "x.jsonl"], capture_output=True, text=True)
    assert missing.returncode == 2 and "no trained probe here" in missing.stderr


def test_adapter_command_scores_like_the_finetune_stage_predicted(trained, tmp_path):
    """Base + adapter loaded from the stage's folder give the test predictions the stage saved."""
    from common import load_split
    test = load_split(trained / "prepared", "test")[:5]
    source = write_lines(tmp_path / "test.jsonl", [{"id": r["id"], "title": r["title"], "text": r["text"]}
                                                    for r in test])
    cmd = [sys.executable, REPO / "stages/score.py", "--adapter", trained / "adapters" / "tiny",
           "--input", source, "--output", tmp_path / "out.jsonl", "--batch-size", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "scored 5 articles with adapter" in done.stdout
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in test]
    with np.load(trained / "adapters" / "tiny" / "test_predictions.npz") as saved:
        expected = saved["scores"][:5]
    np.testing.assert_allclose([list(line["scores"].values()) for line in lines], expected, atol=1e-4)

    both = subprocess.run(cmd + ["--model", "tiny", "--probe", "ridge"], capture_output=True, text=True)
    assert both.returncode == 2 and "either --model and --probe, or --adapter" in both.stderr
    missing = subprocess.run([sys.executable, REPO / "stages/score.py", "--adapter", tmp_path, "--input", source,
                              "--output", tmp_path / "x.jsonl"], capture_output=True, text=True)
    assert missing.returncode == 2 and "run the finetune stage" in missing.stderr
