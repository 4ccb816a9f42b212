import json
import subprocess
import sys

import numpy as np
import pytest

from news_probes.data import load_schema, load_split
from news_probes.io import InputError
from helpers import DIMENSIONS, REPO, make_records, write_lines
from news_probes.records import split_indices
from news_probes.stages.prepare import prepare


def run_prepare(tmp_path, rows, params):
    raw = write_lines(tmp_path / "raw.jsonl", rows)
    return prepare(raw, tmp_path / "prepared", tmp_path / "data.json", params)


def test_both_record_shapes_give_the_same_prepared_data(tmp_path, default_params):
    study = tmp_path / "study"
    generic = tmp_path / "generic"
    study.mkdir(), generic.mkdir()
    run_prepare(study, make_records(60, "study"), default_params)
    run_prepare(generic, make_records(60, "generic"), default_params)
    for split in ("train", "val", "test"):
        a, b = load_split(study / "prepared", split), load_split(generic / "prepared", split)
        assert [(r["id"], r["text"], r["labels"]) for r in a] == [(r["id"], r["text"], r["labels"]) for r in b]
    assert load_schema(study / "prepared")["dimensions"] == DIMENSIONS


def test_split_sizes_follow_the_fractions_and_are_disjoint(tmp_path, default_params):
    default_params["data"].update(val_fraction=0.1, test_fraction=0.2)
    splits, _, _ = run_prepare(tmp_path, make_records(200), default_params)
    sizes = {s: len(r) for s, r in splits.items()}
    assert sizes == {"train": 140, "val": 20, "test": 40}
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert len(ids) == len(set(ids)) == 200
    stats = json.loads((tmp_path / "data.json").read_text())
    assert stats["test"]["count"] == 40 and set(stats["train"]["mean"]) == set(DIMENSIONS)


def test_split_is_stratified_by_mean_score():
    means = np.arange(100, dtype=float)
    idx = split_indices(means, 0.1, 0.2, strata=5, seed=1)
    # Each fifth of the score range gives exactly 4 test and 2 validation records.
    for split, per_bin in (("test", 4), ("val", 2)):
        assert np.bincount(idx[split] // 20, minlength=5).tolist() == [per_bin] * 5


def test_split_depends_on_seed_only():
    means = np.random.default_rng(0).uniform(0, 10, 300)
    a, b, c = (split_indices(means, 0.1, 0.1, 5, seed) for seed in (7, 7, 8))
    assert all(np.array_equal(a[s], b[s]) for s in a)
    assert not np.array_equal(a["test"], c["test"])


def test_auto_score_range_comes_from_the_data(tmp_path, default_params):
    rows = make_records(40, "generic")
    for r in rows:
        r["scores"] = {k: 1 + v * 0.4 for k, v in r["scores"].items()}   # a 1-5 scale
    default_params["data"]["score_range"] = "auto"
    _, _, score_range = run_prepare(tmp_path, rows, default_params)
    assert score_range == [1.0, 5.0]


def _bad(rows_change):
    rows = make_records(30)
    rows_change(rows)
    return rows


BAD_INPUTS = {
    "malformed JSON": (lambda rows: rows.__setitem__(4, '{"id": "x", "title": '), 5, None, "malformed JSON"),
    "missing field": (lambda rows: rows[2].pop("labels"), 3, "labels", "missing"),
    "wrong number of labels": (lambda rows: rows[6]["labels"].pop(), 7, "labels", "2 values for 3"),
    "non-numeric score": (lambda rows: rows[1]["labels"].__setitem__(0, "high"), 2, "labels[wellbeing]",
                          "not a number"),
    # json.dumps writes the NaN literal that Python's json (and many exporters) accept.
    "NaN score": (lambda rows: rows.__setitem__(3, json.dumps({**rows[3], "labels": [float("nan"), 1.0, 2.0]})),
                  4, "labels[wellbeing]", "not a finite number"),
    "out-of-range score": (lambda rows: rows[8]["labels"].__setitem__(2, 11.5), 9, "justice", "outside the range"),
    "empty text": (lambda rows: rows[5].__setitem__("content", "   "), 6, "content", "empty text"),
    "duplicate id": (lambda rows: rows[9].__setitem__("id", "r1"), 10, "id", "duplicate id 'r1'"),
    # Invisible format characters (Unicode Cf) do not make text, and do not make two ids different.
    "zero-width-only text": (lambda rows: rows[4].__setitem__("content", "\u200b\u200b \u2060"), 5, "content",
                             "empty text"),
    "ids equal once normalised": (lambda rows: rows[11].__setitem__("id", "r\u200b1"), 12, "id",
                                  "first on line 2, written 'r1' there: the same id once normalised"),
    "fullwidth id": (lambda rows: rows[12].__setitem__("id", "\uff52\uff11"), 13, "id", "duplicate id"),
    "different dimensions": (lambda rows: rows[7].__setitem__("dimension_names", ["a", "b", "c"]), 8,
                             "dimension_names", "differ"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_file_line_and_field_and_keeps_old_output(tmp_path, case):
    change, line, field, message = BAD_INPUTS[case]
    raw = write_lines(tmp_path / "raw.jsonl", _bad(change))
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "train.jsonl").write_text("earlier output\n")
    result = subprocess.run([sys.executable, "-m", "news_probes.stages.prepare", "--params", REPO / "params.yaml",
                             "--raw", raw, "--out", out, "--metrics", tmp_path / "data.json"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    expected = f"{raw}:{line}: " + (f"{field}: " if field else "")
    assert expected in result.stderr and message in result.stderr, result.stderr
    assert (out / "train.jsonl").read_text() == "earlier output\n"
    assert sorted(p.name for p in out.iterdir()) == ["train.jsonl"]
    assert not (tmp_path / "data.json").exists()
    assert not list(tmp_path.glob("*.partial"))


def test_missing_raw_file_is_reported(tmp_path, default_params):
    with pytest.raises(InputError, match="raw dataset not found"):
        prepare(tmp_path / "nope.jsonl", tmp_path / "out", tmp_path / "m.json", default_params)
