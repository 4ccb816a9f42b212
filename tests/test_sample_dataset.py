"""Every property of the embedded sample that a program can check (see data/sample/README.md).

Point SAMPLE_DATASET at another file to check a copy: SAMPLE_DATASET=/tmp/copy.jsonl pytest tests/test_sample_dataset.py
"""
import copy
import json
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO

SAMPLE = Path(os.environ.get("SAMPLE_DATASET", REPO / "data" / "sample" / "uplifting_sample.jsonl"))
DIMENSIONS = ["human_wellbeing_impact", "social_cohesion_impact", "justice_rights_impact", "evidence_level",
              "benefit_distribution", "change_durability"]
LANGUAGES = {"en", "fr", "es", "pt"}
GROUPS = {"solutions", "off_scope", "somber_progress", "upbeat_no_outcome", "few_vs_many", "pilot_vs_lasting"}
TOPICS = {"health", "rights", "housing", "education", "environment", "community", "peace", "livelihoods",
          "earnings", "product", "military", "celebrity", "speculation", "doom"}


def load_lines(path):
    return Path(path).read_text(encoding="utf-8").splitlines()


def parse(lines):
    """(line number, record) pairs; a line that is not a JSON object is a problem, not a crash."""
    records, problems = [], []
    for number, line in enumerate(lines, start=1):
        try:
            obj = json.loads(line)
            assert isinstance(obj, dict)
            records.append((number, obj))
        except (json.JSONDecodeError, AssertionError):
            problems.append(f"line {number}: not a JSON object")
    return records, problems


def schema_problems(records):
    problems, seen = [], {}
    for n, r in records:
        for field, kind in (("id", str), ("title", str), ("content", str), ("language", str)):
            if not isinstance(r.get(field), kind) or not r[field].strip():
                problems.append(f"line {n}: {field}: missing or empty")
        if r.get("language") not in LANGUAGES:
            problems.append(f"line {n}: language: {r.get('language')!r} not in {sorted(LANGUAGES)}")
        if r.get("dimension_names") != DIMENSIONS:
            problems.append(f"line {n}: dimension_names: not the six names in order")
        labels = r.get("labels")
        if not isinstance(labels, list) or len(labels) != len(DIMENSIONS):
            problems.append(f"line {n}: labels: want {len(DIMENSIONS)} numbers")
            continue
        for d, v in zip(DIMENSIONS, labels):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 10 or round(v, 1) != v:
                problems.append(f"line {n}: labels[{d}]: {v!r} is not a 0-10 score with at most one decimal")
        if r.get("id") in seen:
            problems.append(f"line {n}: id: {r['id']!r} repeats line {seen[r['id']]}")
        seen.setdefault(r.get("id"), n)
    return problems


def length_problems(records):
    words = [len(r["content"].split()) for _, r in records]
    problems = [f"line {n}: content: {w} words, outside 120-450" for (n, _), w in zip(records, words)
                if not 120 <= w <= 450]
    if statistics.median(words) < 170:
        problems.append(f"median length {statistics.median(words)} words, below 170")
    return problems


def coverage_problems(records):
    problems = []
    if len(records) < 600:
        problems.append(f"{len(records)} records, fewer than 600")
    languages = [r["language"] for _, r in records]
    other = sum(lang != "en" for lang in languages) / len(languages)
    if not 0.10 <= other <= 0.20:
        problems.append(f"{other:.1%} of records in fr/es/pt, want about 15% (10-20%)")
    missing = (LANGUAGES - set(languages)) | (GROUPS - {r.get("group") for _, r in records}) \
        | (TOPICS - {r.get("topic") for _, r in records})
    if missing:
        problems.append(f"no record for {sorted(missing)}")
    return problems


def spread_problems(records):
    labels = np.array([r["labels"] for _, r in records], dtype=float)
    problems = []
    for d, column in zip(DIMENSIONS, labels.T):
        if column.std() < 1.5:
            problems.append(f"{d}: standard deviation {column.std():.2f} below 1.5")
        if column.min() > 2 or column.max() < 7:
            problems.append(f"{d}: range {column.min()}-{column.max()} misses <= 2 or >= 7")
    with np.errstate(invalid="ignore"):   # a constant column is reported by the spread check above
        corr = np.corrcoef(labels.T)
    for i in range(len(DIMENSIONS)):
        for j in range(i + 1, len(DIMENSIONS)):
            if corr[i, j] > 0.85:
                problems.append(f"{DIMENSIONS[i]} ~ {DIMENSIONS[j]}: Pearson {corr[i, j]:.3f} above 0.85")
    return problems


def long_sentences(text):
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        words = re.findall(r"\w+", sentence.lower())
        if len(words) >= 8:
            yield " ".join(words)


def shared_sentence_problems(records):
    where = defaultdict(set)
    for n, r in records:
        for sentence in long_sentences(r["title"] + "\n" + r["content"]):
            where[sentence].add(n)
    return [f"lines {sorted(lines)}: share the sentence '{s[:60]}...'" for s, lines in where.items() if len(lines) > 1]


CHECKS = [schema_problems, length_problems, coverage_problems, spread_problems, shared_sentence_problems]


@pytest.fixture(scope="module")
def sample():
    if not SAMPLE.is_file():
        pytest.fail(f"{SAMPLE} is missing")
    records, problems = parse(load_lines(SAMPLE))
    assert problems == []
    return records


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_sample_property(sample, check):
    assert check(sample) == []


def test_file_is_small_plain_jsonl_readable_by_pandas():
    import pandas as pd
    assert SAMPLE.stat().st_size < 5 * 2**20
    frame = pd.read_json(SAMPLE, lines=True)
    assert list(frame.columns[:6]) == ["id", "title", "content", "language", "labels", "dimension_names"]


def test_dataset_card_figures_match_its_command():
    printed = subprocess.run([sys.executable, REPO / "data/sample/describe.py", SAMPLE], capture_output=True,
                             text=True, check=True).stdout
    assert printed.strip() and printed in (REPO / "data/sample/README.md").read_text(encoding="utf-8")


# The checks must catch one broken record: each case breaks a single record of a copy of the sample.
def _set(field, value):
    return lambda r: r.__setitem__(field, value)


BREAKS = {
    "label out of range": lambda r: r["labels"].__setitem__(2, 10.5),
    "two decimals": lambda r: r["labels"].__setitem__(0, 3.25),
    "five labels": lambda r: r["labels"].pop(),
    "dimension order": lambda r: r["dimension_names"].reverse(),
    "unknown language": _set("language", "de"),
    "empty title": _set("title", " "),
    "too short": lambda r: r.__setitem__("content", " ".join(r["content"].split()[:100])),
    "too long": lambda r: r.__setitem__("content", r["content"] + (" filler" * 460)),
    "duplicate id": None,
    "shared sentence": None,
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_checks_catch_one_broken_record(sample, case):
    broken = copy.deepcopy(sample)
    target = broken[7][1]
    if case == "duplicate id":
        target["id"] = broken[3][1]["id"]
    elif case == "shared sentence":
        sentence = next(long_sentences(broken[3][1]["content"]))
        target["content"] += " " + sentence.capitalize() + "."
    else:
        BREAKS[case](target)
    assert any(check(broken) for check in CHECKS), case


def test_checks_catch_collapsed_spread_and_duplicated_dimension(sample):
    flat = [(n, {**r, "labels": [5.0] * 5 + [r["labels"][5]]}) for n, r in sample]
    assert any("standard deviation" in p for p in spread_problems(flat))
    twin = [(n, {**r, "labels": r["labels"][:5] + [r["labels"][0]]}) for n, r in sample]
    assert any("Pearson" in p for p in spread_problems(twin))


def test_malformed_line_is_reported():
    _, problems = parse(['{"id": "a"}', '{"id": '])
    assert problems == ["line 2: not a JSON object"]
