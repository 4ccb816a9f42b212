"""Bad input is one line naming the file or field, with exit 2; no stage leaves partial outputs, even killed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
