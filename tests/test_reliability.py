"""Bad input is one line naming the file or field, with exit 2; no stage leaves partial outputs, even killed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import REPO, make_records, tiny_finetune_profile, write_lines
from news_probes.embedders import embedder_config
from news_probes.io import InputError, write_json
from news_probes.params import base_seed, grid_models
from news_probes.probes import built_probes
from news_probes.records import load_records, read_articles
from news_probes.stages.prepare import prepare
from news_probes.stages.stack import stack

COMMAND = [sys.executable, "-m", "news_probes.cli"]


def stage(module, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", f"news_probes.stages.{module}", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def non_utf8_file(tmp_path):
    """Two good records, then one whose title holds a Latin-1 byte (0xe9)."""
    rows = make_records(3)
    good = "".join(json.dumps(r) + "\n" for r in rows[:2]).encode("utf-8")
    bad = json.dumps({**rows[2], "title": "caf_"}).encode("utf-8").replace(b"caf_", b"caf\xe9")
    path = tmp_path / "raw.jsonl"
    path.write_bytes(good + bad + b"\n")
    return path, len(good) + bad.index(b"\xe9")


def test_a_byte_that_is_not_utf8_names_the_file_line_and_byte_offset(tmp_path, tiny_pipeline):
    path, offset = non_utf8_file(tmp_path)
    for read in (lambda: load_records(path, [0, 10]), lambda: read_articles(path)):
        with pytest.raises(InputError, match=rf"raw.jsonl:3: not UTF-8: byte 0xe9 at byte offset {offset} "):
            read()
    out = tmp_path / "prepared"
    done = stage("prepare", "--params", REPO / "params.yaml", "--raw", path, "--out", out, "--metrics",
                 tmp_path / "data.json")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert f"raw.jsonl:3: not UTF-8: byte 0xe9 at byte offset {offset}" in done.stderr and not out.exists()
    probe = tiny_pipeline[0] / "probes" / "tiny" / "ridge"
    scored = subprocess.run([*COMMAND, "score", str(probe), "--input", str(path)], capture_output=True, text=True)
    assert scored.returncode == 2 and "raw.jsonl:3: not UTF-8" in scored.stderr.strip().splitlines()[-1]


@pytest.fixture
def params():
    return yaml.safe_load((REPO / "params.yaml").read_text())


# Each case: a change to params, the check that reads it, the field and the message of the one-line error.
PARAM_CASES = {
    "hidden as a string": (lambda p: p["probes"]["mlp"].update(hidden="256"), "probes", "probes.mlp",
                           "hidden must be a non-empty list, not '256'"),
    "no ridge alphas": (lambda p: p["probes"]["ridge"].update(alphas=[]), "probes", "probes.ridge",
                        "alphas must be a non-empty list, not []"),
    "negative alpha": (lambda p: p["probes"]["ridge"].update(alphas=[1, -1]), "probes", "probes.ridge",
                       "alphas item must be a number > 0, not -1"),
    "no models": (lambda p: p.update(models=[]), "models", "models", "must name at least one model, not []"),
    "negative seed": (lambda p: p.update(seed=-1), "seed", "seed", "must be an integer >= 0, not -1"),
    "zero batch size": (lambda p: p["embedders"]["all-MiniLM-L6-v2"].update(batch_size=0), "embedder",
                        "embedders.all-MiniLM-L6-v2.batch_size", "must be an integer >= 1, not 0"),
    "string epochs": (lambda p: p["probes"]["mlp"].update(epochs="100"), "probes", "probes.mlp",
                      "epochs must be an integer >= 1, not '100'"),
    "string fraction": (lambda p: p["data"].update(val_fraction="0.15"), "prepare", "data.val_fraction",
                        "must be a number > 0 and <= 0.9, not '0.15'"),
    "fractions summing to 1": (lambda p: p["data"].update(val_fraction=0.5, test_fraction=0.5), "prepare", "data",
                               "val_fraction and test_fraction must sum below 1"),
    "zero strata": (lambda p: p["data"].update(strata=0), "prepare", "data.strata", "must be an integer >= 1, not 0"),
    "one fold": (lambda p: p["stack"].update(folds=1), "stack", "stack.folds", "must be an integer >= 2, not 1"),
}
CHECKS = {"probes": lambda p: built_probes(p, (0, 10)), "models": grid_models, "seed": base_seed,
          "embedder": lambda p: embedder_config(p, "all-MiniLM-L6-v2"),
          # the stages check their settings before they read a file: these paths do not exist
          "prepare": lambda p: prepare("missing.jsonl", "missing/out", "missing/data.json", p),
          "stack": lambda p: stack("missing", "missing", "missing/out", "missing/stack.json", p)}


@pytest.mark.parametrize("case", sorted(PARAM_CASES))
def test_a_wrong_type_or_range_in_params_is_refused_with_its_field(params, case):
    change, check, field, message = PARAM_CASES[case]
    change(params)
    with pytest.raises(InputError) as caught:
        CHECKS[check](params)
    assert str(caught.value) == f"params.yaml: {field}: {message}"


def test_a_stage_with_a_bad_param_exits_2_with_one_line_and_keeps_its_outputs(params, tmp_path):
    params["seed"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    raw = write_lines(tmp_path / "raw.jsonl", make_records(30))
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "train.jsonl").write_text("earlier output\n")
    done = stage("prepare", "--params", tmp_path / "params.yaml", "--raw", raw, "--out", out, "--metrics",
                 tmp_path / "data.json")
    assert done.returncode == 2 and done.stderr.strip() == f"error: {tmp_path / 'params.yaml'}: seed: must be an " \
                                                            f"integer >= 0, not -1"
    assert (out / "train.jsonl").read_text() == "earlier output\n" and not (tmp_path / "data.json").exists()


def test_the_scorer_refuses_a_zero_batch_size_and_an_output_directory(tmp_path):
    source = write_lines(tmp_path / "in.jsonl", [{"id": 1, "text": "clinic water"}])
    zero = subprocess.run([*COMMAND, "score", str(tmp_path), "--input", str(source), "--batch-size", "0"],
                          capture_output=True, text=True)
    assert zero.returncode == 2 and "argument --batch-size: must be an integer >= 1, not '0'" in zero.stderr
    folder = subprocess.run([*COMMAND, "score", str(tmp_path), "--input", str(source), "--output", str(tmp_path)],
                            capture_output=True, text=True)
    assert folder.returncode == 2
    assert folder.stderr.strip() == f"error: {tmp_path}: is a directory: --output names the file to write (or - " \
                                    f"for stdout)"


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        os.umask(0o077)
        write_json(tmp_path / "b.json", {"b": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644     # as DVC's checkouts and any new file
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600


def test_a_killed_finetune_leaves_the_previous_outputs_never_partial_ones(tiny_pipeline, tiny_qwen_dir, tmp_path):
    """SIGKILL to the stage's process group while DVCLive is writing: the live folder and the adapter folder
    hold the previous complete run's files, byte for byte."""
    import shutil
    root, params = tiny_pipeline
    params = {**params, "finetune": {"profile": "tiny", "profiles": {"tiny": tiny_finetune_profile(
        tiny_qwen_dir, epochs=400, batch_size=4)}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    live, adapter = tmp_path / "live", tmp_path / "adapter"
    shutil.copytree(root / "live", live)
    shutil.copytree(root / "adapters" / "tiny", adapter)
    before = {p.relative_to(tmp_path): p.read_bytes() for d in (live, adapter) for p in d.rglob("*") if p.is_file()}
    process = subprocess.Popen([sys.executable, "-m", "news_probes.stages.finetune", "--params",
                                str(tmp_path / "params.yaml"), "--prepared", str(root / "prepared"), "--out",
                                str(adapter), "--live", str(live)], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loss = tmp_path / "live.partial" / "plots" / "metrics" / "train" / "loss.tsv"
    try:
        deadline = time.time() + 120
        while not (loss.is_file() and len(loss.read_text().splitlines()) > 3) and time.time() < deadline:
            time.sleep(0.1)
        assert loss.is_file(), "the stage never logged a training step into its staging folder"
    finally:
        os.killpg(process.pid, signal.SIGKILL)      # whatever happened: no training left running
        process.wait()
    after = {p.relative_to(tmp_path): p.read_bytes() for d in (live, adapter) for p in d.rglob("*") if p.is_file()}
    assert after == before
    assert json.loads((live / "metrics.json").read_text())["trained"] is True     # the complete summary


def md5_of(path):
    import hashlib
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def quality_metrics(work):
    """The quality metrics a run commits (no timings): every file under metrics/probes, summary and data."""
    files = [work / "metrics" / "summary.json", work / "metrics" / "data.json",
             *sorted((work / "metrics" / "probes").rglob("*.json"))]
    return {p.relative_to(work).as_posix(): p.read_text() for p in files}


@pytest.mark.slow
def test_a_corrupted_cache_object_is_found_removed_and_rebuilt(tmp_path, tiny_qwen_dir):
    """What DVC does not check, and what `news-probes verify` does: a cached embedding corrupted in place is
    checked out without a word, a forced probe run trains on it and stores the wrong outputs in the run-cache
    under the right key; verify names the object and its stage, removes what was built on it, and the next
    `dvc repro` gives the committed metrics back."""
    from helpers import isolated_env, make_project, sh
    env = isolated_env(tmp_path)
    work = make_project(tmp_path / "project", env, tiny_qwen_dir)
    sh("dvc repro -q && dvc status && git add -A && git commit -qm run", work, env)
    committed = quality_metrics(work)
    target = work / "data" / "embeddings" / "all-MiniLM-L6-v2" / "test.npy"
    md5 = md5_of(target)
    obj = work / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    before = obj.stat()
    obj.chmod(0o644)
    data = bytearray(obj.read_bytes())
    data[-400:-200] = bytes(200)        # zeros over part of the last rows: same size, the header intact
    obj.write_bytes(bytes(data))
    os.utime(obj, ns=(before.st_atime_ns, before.st_mtime_ns))      # in place, as bit rot: mtime kept
    # DVC's side: a checkout restores the corrupted bytes and reports nothing; status stays clean.
    target.unlink()
    sh("dvc checkout -q", work, env)
    assert md5_of(target) != md5 and "up to date" in sh("dvc status", work, env)
    # A forced run of the probes trains on them, and the run-cache records the result under the right key.
    sh("dvc repro -q -f -s probe@all-MiniLM-L6-v2 && dvc repro -q", work, env)
    assert quality_metrics(work) != committed

    dry = sh("news-probes verify --dry-run", work, env, check=False)
    assert dry.returncode == 1 and f".dvc/cache/files/md5/{md5[:2]}/{md5[2:]}" in dry.stderr
    assert "stage embed@all-MiniLM-L6-v2" in dry.stderr and obj.exists()
    done = sh("news-probes verify", work, env, check=False)
    assert done.returncode == 1, done.stderr
    assert "corrupted cache object" in done.stderr and "corrupted workspace file" in done.stderr
    assert "dropped stage probe@all-MiniLM-L6-v2 from dvc.lock" in done.stderr
    assert "removed run-cache entry" in done.stderr
    assert not obj.exists() and not target.exists()
    sh("dvc repro -q", work, env)
    assert quality_metrics(work) == committed and md5_of(target) == md5
    assert sh("news-probes verify", work, env, check=False).returncode == 0


def test_what_dvc_checks_of_its_cache_and_what_verify_adds(tmp_path):
    """DVC re-hashes a cache object only when its recorded mtime, inode or size changed: an object rewritten
    with a new mtime is noticed by `dvc status` (and deleted), one corrupted in place with its mtime kept (what
    bit rot or a restored backup looks like) is trusted by status and checkout alike. verify finds it and, the
    workspace copy being intact, puts the object back from it; nothing else is removed."""
    from helpers import isolated_env, sh
    from news_probes.verify import verify
    env = isolated_env(tmp_path)
    work = tmp_path / "repo"
    work.mkdir()
    sh("git init -q -b main && dvc init -q", work, env)
    (work / "dvc.yaml").write_text("stages:\n  copy:\n    cmd: mkdir -p out && cp in.txt out/a.txt && "
                                   "echo other > b.txt\n    deps: [in.txt]\n    outs: [out, b.txt]\n")
    (work / "in.txt").write_text("hello\n")
    sh("dvc repro -q && dvc status", work, env)      # status records the objects' hashes in DVC's state
    md5 = md5_of(work / "out" / "a.txt")
    obj = work / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    before = obj.stat()
    obj.chmod(0o644)
    obj.write_text("hellO\n")
    os.utime(obj, ns=(before.st_atime_ns, before.st_mtime_ns))
    obj.chmod(before.st_mode)
    assert "up to date" in sh("dvc status", work, env) and obj.read_text() == "hellO\n"
    report = verify(work, dry_run=True)
    assert [(f.kind, f.stage, f.label) for f in report.findings] == [("cache object", "copy", "out/a.txt")]
    assert obj.read_text() == "hellO\n"
    report = verify(work)
    assert obj.read_text() == "hello\n" and report.actions == [
        f"restored .dvc/cache/files/md5/{md5[:2]}/{md5[2:]} from its intact workspace copy out/a.txt"]
    assert (work / "b.txt").exists() and not verify(work).findings
    # A new mtime: DVC's own check notices, and removes the object.
    obj.chmod(0o644)
    obj.write_text("hellO\n")
    assert "not in cache" in sh("dvc status", work, env) and not obj.exists()


def test_a_corrupted_artifact_fails_with_its_path(tiny_pipeline, tmp_path):
    """Truncated or altered files a stage or the scorer loads: one error naming the file, never a traceback."""
    import shutil
    from news_probes.artifacts import load_embeddings, load_predictions, save_predictions
    from news_probes.probes import load_probe
    root, _ = tiny_pipeline
    probe = tmp_path / "ridge"
    shutil.copytree(root / "probes" / "tiny" / "ridge", probe)
    arrays = next(probe.rglob("arrays.npz"))
    arrays.write_bytes(arrays.read_bytes()[:-30])
    with pytest.raises(InputError, match=rf"{arrays}: unreadable \(BadZipFile"):
        load_probe(probe)
    emb = tmp_path / "emb"
    emb.mkdir()
    np.save(emb / "test.npy", np.full((3, 4), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match=rf"{emb / 'test.npy'}: values that are not finite"):
        load_embeddings(emb, "test", 3)
    np.save(emb / "val.npy", np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(InputError, match=r"val.npy: dtype int64, shape \(3, 4\), expected float32"):
        load_embeddings(emb, "val", 3)
    save_predictions(tmp_path, "val", ["a", "b"], np.zeros((2, 3)), seed_scores=np.zeros((5, 2, 2)))
    with pytest.raises(InputError, match=r"val_predictions.npz: seed_scores: shape \(5, 2, 2\), expected \(seeds, 2, 3\)"):
        load_predictions(tmp_path, "val", ["a", "b"])
    (tmp_path / "test_predictions.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError, match=r"test_predictions.npz: unreadable"):
        load_predictions(tmp_path, "test", ["a", "b"])


def test_the_thread_setting(tmp_path):
    from news_probes import threads
    assert threads.threads({}, cores=8, workers=0) == 8
    assert threads.threads({}, cores=8, workers=2) == 4
    assert threads.threads({}, cores=2, workers=3) == 1
    assert threads.threads({"NEWS_PROBES_THREADS": "3"}, cores=8, workers=2) == 3
    assert threads.threads({"OMP_NUM_THREADS": "5"}, cores=8, workers=2) == 5
    assert threads.threads({"NEWS_PROBES_THREADS": "auto", "OMP_NUM_THREADS": "5"}, cores=8) == 5
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match=rf"NEWS_PROBES_THREADS must be an integer >= 1 or auto, not '{bad}'"):
            threads.threads({"NEWS_PROBES_THREADS": bad})
    # queue workers as DVC starts them: `dvc exp queue-worker <node>`, one node per worker
    for pid, args in {"11": ["python", "dvc", "exp", "queue-worker", "dvc-exp-a1b2c3-1@localhost"],
                      "12": ["python", "dvc", "exp", "queue-worker", "dvc-exp-a1b2c3-2@localhost"],
                      "13": ["python", "-m", "news_probes.stages.embed"], "self": ["ignored"]}.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(b"\0".join(a.encode() for a in args) + b"\0")
    assert threads.queue_workers(tmp_path) == 2
    # a stage applies it before torch loads; a malformed setting is one line and exit 2
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    shown = subprocess.run([sys.executable, "-c", "import torch; from news_probes.io import run_main; "
                            "run_main(lambda: print(torch.get_num_threads()))"],
                           env={**env, "NEWS_PROBES_THREADS": "1"}, capture_output=True, text=True)
    assert shown.stdout.strip() == "1", shown.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "news_probes.stages.prepare", "--help"], env={**env, "NEWS_PROBES_THREADS": "x"},
        capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: environment: NEWS_PROBES_THREADS must be an " \
                                                         "integer >= 1 or auto, not 'x'"


def test_the_scorer_refuses_invisible_only_text_and_ids_equal_once_normalised(tmp_path):
    """What prepare refuses, the scorer's reader refuses too: it shares the record checks."""
    blank = write_lines(tmp_path / "blank.jsonl", [{"id": "a", "text": "clinic"}, {"id": "b", "text": "\u200b\u2060 "}])
    with pytest.raises(InputError, match=r"blank.jsonl:2: text: missing or empty text"):
        read_articles(blank)
    twins = write_lines(tmp_path / "twins.jsonl", [{"id": "a1", "text": "clinic"}, {"id": "a\u200b1", "text": "farm"}])
    with pytest.raises(InputError, match=r"twins.jsonl:2: id: duplicate id .* \(first on line 1"):
        read_articles(twins)
