"""Scoring new articles: the library (news_probes.scoring) and the `news-probes score` command."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import make_records, write_lines
from news_probes.data import load_split, model_input
from news_probes.hardware import choose_backend, choose_device
from news_probes.records import read_articles
from news_probes.scoring import AdapterScorer, Scorer, load_scorer, score_file

# The console script of the installed package, beside the interpreter running the tests.
COMMAND = shutil.which("news-probes", path=str(Path(sys.executable).parent)) or "news-probes"


@pytest.fixture(scope="module")
def trained(tiny_pipeline):
    return tiny_pipeline[0]


def news_probes(*args, cwd, stdin=None):
    return subprocess.run([COMMAND, *map(str, args)], cwd=cwd, input=stdin, capture_output=True, text=True)


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


def test_one_loader_serves_probe_and_adapter_folders(trained, tmp_path):
    assert isinstance(load_scorer(trained / "probes" / "tiny" / "mlp"), Scorer)
    assert isinstance(load_scorer(trained / "adapters" / "tiny"), AdapterScorer)
    (tmp_path / "scoring.json").write_text(json.dumps({"kind": "svm"}))
    with pytest.raises(Exception, match=r"scoring.json: kind: must be one of \('probe', 'adapter', 'stack', 'route'\)"):
        load_scorer(tmp_path)


def test_help_works_from_any_directory(tmp_path):
    done = news_probes("score", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "a probe folder (models/probes/<model>/<probe>)" in done.stdout, done.stderr


def test_command_scores_a_file_and_refuses_bad_input(trained, tmp_path):
    good = write_lines(tmp_path / "good.jsonl", [{"id": 1, "content": "clinic water"}, {"id": 2, "text": "farm"}])
    folder = trained / "probes" / "tiny" / "lightgbm"
    done = news_probes("--log-level", "info", "score", folder, "--input", good, "--output", "out.jsonl",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    device = choose_device()
    backend, dtype = choose_backend("auto", device)              # the tiny model is a sentence-transformers one
    assert f"scored 2 articles with tiny / lightgbm ({dtype} {backend} on {device})" in done.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    assert "score: 100%" in done.stderr                                         # the bar over the articles
    quiet = news_probes("score", folder, "-i", good, "-o", "quiet.jsonl", cwd=tmp_path)   # the suite's WARNING
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    forced = news_probes("--log-level", "INFO", "score", folder, "-i", good, "-o", "fp32.jsonl", "--dtype", "float32",
                         cwd=tmp_path)
    backend = choose_backend("auto", device, "float32")[0]
    assert forced.returncode == 0 and f"(float32 {backend} on {device})" in forced.stderr, forced.stderr

    bad = write_lines(tmp_path / "bad.jsonl", [{"id": 1, "content": "clinic"}, {"id": 2, "content": "  "}])
    failed = news_probes("score", folder, "--input", bad, "--output", "bad-out.jsonl", cwd=tmp_path)
    assert failed.returncode == 2 and f"error: {bad}:2: content: missing or empty text" in failed.stderr
    assert not (tmp_path / "bad-out.jsonl").exists()

    missing = news_probes("score", trained / "probes" / "tiny" / "svm", "-i", good, "-o", "x.jsonl", cwd=tmp_path)
    assert missing.returncode == 2 and "no scoring.json here: not a trained probe or adapter folder" in missing.stderr


def test_command_reads_stdin_and_writes_stdout(trained, tmp_path):
    articles = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(["clinic water", "farm loan"]))
    done = news_probes("--log-level", "info", "score", trained / "probes" / "tiny" / "ridge", cwd=tmp_path,
                       stdin=articles)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]       # stdout holds the JSONL alone
    assert [line["id"] for line in lines] == ["0", "1"] and "-> stdout" in done.stderr
    bad = news_probes("score", trained / "probes" / "tiny" / "ridge", "-i", "-", cwd=tmp_path, stdin='{"id": 1}\n')
    assert bad.returncode == 2 and "error: <stdin>:1: text: missing or empty text" in bad.stderr


def test_adapter_command_scores_like_the_finetune_stage_predicted(trained, tmp_path):
    """Base + adapter loaded from the stage's folder give the test predictions the stage saved."""
    test = load_split(trained / "prepared", "test")[:5]
    source = write_lines(tmp_path / "test.jsonl", [{"id": r["id"], "title": r["title"], "text": r["text"]}
                                                    for r in test])
    done = news_probes("--log-level", "info", "score", trained / "adapters" / "tiny", "--input", source,
                       "--output", "out.jsonl", "--batch-size", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "scored 5 articles with adapter tiny" in done.stderr
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in test]
    with np.load(trained / "adapters" / "tiny" / "test_predictions.npz") as saved:
        expected = saved["scores"][:5]
    np.testing.assert_allclose([list(line["scores"].values()) for line in lines], expected, atol=1e-4)


def test_a_probe_on_tfidf_concatenated_with_an_encoder_scores_alone_as_the_stage_predicted(trained, tmp_path,
                                                                                             tiny_pipeline):
    from news_probes.artifacts import load_predictions
    from news_probes.stages.combine import combine
    from news_probes.stages.embed import embed
    from news_probes.stages.probe import fit_probes
    _, params = tiny_pipeline
    params = {**params, "probe": ["ridge", "mlp"], "models": ["tiny", "lexical"],
              "combined": {"tiny+lexical": ["tiny", "lexical"]},
              "embedders": {**params["embedders"], "lexical": {"kind": "tfidf", "min_df": 1}}}
    embed("lexical", trained / "prepared", tmp_path / "emb" / "lexical", tmp_path / "meta" / "lexical.json", params)
    meta = combine("tiny+lexical", trained / "prepared", [trained / "emb" / "tiny", tmp_path / "emb" / "lexical"],
                   [trained / "meta" / "tiny.json", tmp_path / "meta" / "lexical.json"],
                   tmp_path / "emb" / "tiny+lexical", tmp_path / "meta" / "tiny+lexical.json", params)
    assert meta["dimension"] == 32 + json.loads((tmp_path / "meta" / "lexical.json").read_text())["dimension"]
    fit_probes("tiny+lexical", trained / "prepared", tmp_path / "emb" / "tiny+lexical", tmp_path / "probes",
               tmp_path / "fit.json", params)
    test = load_split(trained / "prepared", "test")
    for probe in ("ridge", "mlp"):
        folder = tmp_path / "probes" / probe
        # The folder carries the fitted vocabulary: nothing else is needed to score.
        assert (folder / "fitted" / "lexical.json").is_file()
        scorer = load_scorer(folder)            # the precision the stage chose on this machine
        expected = load_predictions(folder, "test", [r["id"] for r in test])["scores"]
        np.testing.assert_allclose(scorer.predict([model_input(r) for r in test]), expected, atol=1e-4)


def test_the_stacked_candidate_scores_as_the_stack_stage_predicted(trained):
    from news_probes.artifacts import load_predictions
    from news_probes.scoring import StackScorer
    scorer = load_scorer(trained / "stacked")
    assert isinstance(scorer, StackScorer)
    weights = json.loads((trained / "stack.json").read_text())["weights"]
    assert scorer.names == [c for c, w in weights.items() if w > 0]       # only members with a weight load
    test = load_split(trained / "prepared", "test")
    expected = load_predictions(trained / "stacked", "test", [r["id"] for r in test])["scores"]
    np.testing.assert_allclose(scorer.predict([model_input(r) for r in test]), expected, atol=1e-4)


def test_a_stack_encodes_each_text_once_per_model_however_many_members_share_it(trained, tmp_path):
    import os
    from news_probes.artifacts import write_scoring
    from news_probes.scoring import StackScorer
    probes = ["ridge", "mlp", "lightgbm"]
    write_scoring(tmp_path, "stack", ["wellbeing", "cohesion", "justice"], [0, 10], weighting="shared",
                  members=[{"folder": os.path.relpath(trained / "probes" / "tiny" / p, tmp_path), "candidate": p,
                            "weights": [1 / 3]} for p in probes])
    scorer = StackScorer(tmp_path)
    embedders = {id(m.embedder) for m in scorer.members}
    assert len(embedders) == 1                       # one embedder object for the three members of model `tiny`
    shared = scorer.members[0].embedder
    calls = []
    encode = shared.embedder.encode
    shared.embedder.encode = lambda texts, show_progress=False: calls.append(len(texts)) or encode(texts, False)
    texts = [model_input(r) for r in load_split(trained / "prepared", "test")]
    scores = scorer.predict(texts)
    assert calls == [len(texts)]                     # encoded once, not once per member
    expected = np.mean([Scorer(trained / "probes" / "tiny" / p).predict(texts) for p in probes], axis=0)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    scorer.predict(texts[:3])
    assert calls == [len(texts), 3]                  # new texts are encoded again
    scorer.predict(list(texts))
    assert calls == [len(texts), 3, len(texts)]      # so is another list of the same texts (a timed rerun)
    reused = texts[:2]
    scorer.predict(reused)
    reused[0] = texts[5]                             # refilled in place: not served from memory
    scorer.predict(reused)
    assert calls[-2:] == [2, 2]
