"""Raw articles: the two record shapes accepted (see docs/pipeline.md, "Data"), validated with errors that name the file,
line and field, and the stratified train/val/test split.

  study:   {"id", "title", "content", "labels": [floats], "dimension_names": [names], ...}
  generic: {"id", "title", "text", "scores": {dimension: float}}
"""
import math
import unicodedata
from pathlib import Path

import numpy as np

from news_probes.data import SPLITS
from news_probes.io import InputError, read_jsonl, source_name


def visible(text):
    """The text without invisible format characters (Unicode category Cf: zero-width spaces, joiners, marks of
    direction, byte-order marks) and surrounding whitespace: what emptiness is judged on."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()


def id_key(article_id):
    """What ids are compared by: NFKC-normalised, without invisible format characters, so two ids a reader
    cannot tell apart are one id."""
    return visible(unicodedata.normalize("NFKC", str(article_id)))


def article_fields(number, obj, path):
    """id, title and text of one raw record (either shape), validated; labels are not looked at."""
    def fail(field, message):
        raise InputError(path, message, line=number, field=field)

    if "id" not in obj:
        fail("id", "missing field")
    if not isinstance(obj["id"], (str, int)) or isinstance(obj["id"], bool) or not id_key(obj["id"]):
        fail("id", "must be a non-empty string or integer (invisible characters do not count)")
    title = obj.get("title", "")
    if not isinstance(title, str):
        fail("title", "must be a string")
    text_field = "content" if "content" in obj else "text"
    text = obj.get(text_field)
    if not isinstance(text, str) or not visible(text):
        fail(text_field, "missing or empty text (invisible characters and whitespace do not count)")
    return {"id": str(obj["id"]), "title": title.strip(), "text": text.strip()}


def normalise(number, obj, path):
    """One raw record -> (record, dimension names). Raises InputError naming the line and field."""
    def fail(field, message):
        raise InputError(path, message, line=number, field=field)

    article = article_fields(number, obj, path)
    if "labels" in obj or "dimension_names" in obj:
        names, values = obj.get("dimension_names"), obj.get("labels")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            fail("dimension_names", "must be a non-empty list of names")
        if not isinstance(values, list):
            fail("labels", "missing field or not a list")
        if len(values) != len(names):
            fail("labels", f"has {len(values)} values for {len(names)} dimension_names")
        label_field = "labels"
    elif "scores" in obj:
        if not isinstance(obj["scores"], dict) or not obj["scores"]:
            fail("scores", "must be a non-empty object {dimension: score}")
        names, values = list(obj["scores"]), list(obj["scores"].values())
        label_field = "scores"
    else:
        fail("labels", "missing field (need labels + dimension_names, or scores)")
    if len(set(names)) != len(names):
        fail(label_field, "repeats a dimension name")
    for name, value in zip(names, values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(f"{label_field}[{name}]", f"not a number: {value!r}")
        if not math.isfinite(value):
            fail(f"{label_field}[{name}]", f"not a finite number: {value!r}")
    return {**article, "labels": [float(v) for v in values]}, names


def claim_id(seen, article_id, number, path):
    """Record that `article_id` is on line `number`; a second claim of the same id (as id_key compares them) is
    an error naming both lines."""
    key = id_key(article_id)
    if key in seen:
        first, first_id = seen[key]
        same = "" if first_id == article_id else f", written {first_id!r} there: the same id once normalised"
        raise InputError(path, f"duplicate id {article_id!r} (first on line {first}{same})", line=number,
                         field="id")
    seen[key] = (number, article_id)


def load_records(path, score_range):
    """Validate every record of a raw JSONL file; all records must share one dimension list."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "raw dataset not found (data.raw in params)")
    records, dimensions, first_line, seen = [], None, None, {}
    for number, obj in read_jsonl(path):
        record, names = normalise(number, obj, path)
        if dimensions is None:
            dimensions, first_line = names, number
        elif names != dimensions:
            raise InputError(path, f"dimensions {names} differ from {dimensions} on line {first_line}",
                             line=number, field="dimension_names" if "dimension_names" in obj else "scores")
        claim_id(seen, record["id"], number, path)
        if score_range is not None:
            lo, hi = score_range
            for name, value in zip(names, record["labels"]):
                if not lo <= value <= hi:
                    raise InputError(path, f"score {value} outside the range [{lo}, {hi}] (data.score_range)",
                                     line=number, field=name)
        records.append(record)
    if not records:
        raise InputError(path, "no records")
    return records, dimensions


def infer_range(records):
    """With `score_range: auto`, the scale is the observed one, widened to whole numbers."""
    values = np.array([r["labels"] for r in records])
    return [float(math.floor(values.min())), float(math.ceil(values.max()))]


def split_indices(mean_scores, val_fraction, test_fraction, strata, seed):
    """Stratified split on binned mean score: each quantile bin is shuffled and cut by the fractions.

    Rounding is carried from bin to bin so the split sizes match the fractions of the whole set.
    """
    rng = np.random.default_rng(seed)
    order = np.argsort(mean_scores, kind="stable")
    assignment = np.full(len(order), "train", dtype=object)
    want_test = want_val = 0.0
    n_test_so_far = n_val_so_far = 0
    for bin_indices in np.array_split(order, max(1, min(strata, len(order)))):
        shuffled = rng.permutation(bin_indices)
        want_test += len(shuffled) * test_fraction
        want_val += len(shuffled) * val_fraction
        n_test = int(round(want_test)) - n_test_so_far
        n_val = int(round(want_val)) - n_val_so_far
        assignment[shuffled[:n_test]] = "test"
        assignment[shuffled[n_test:n_test + n_val]] = "val"
        n_test_so_far += n_test
        n_val_so_far += n_val
    return {split: np.flatnonzero(assignment == split) for split in SPLITS}


def split_records(records, val_fraction, test_fraction, strata, seed, path):
    """{split: records in input order}, stratified on each record's mean score; every split needs 2 records."""
    means = np.array([np.mean(r["labels"]) for r in records])
    indices = split_indices(means, val_fraction, test_fraction, strata, seed)
    splits = {split: [records[i] for i in sorted(idx)] for split, idx in indices.items()}
    for split, rows in splits.items():
        if len(rows) < 2:
            raise InputError(path, f"only {len(rows)} records would go to {split}; need at least 2")
    return splits


def split_stats(records, dimensions):
    labels = np.array([r["labels"] for r in records])
    return {"count": len(records),
            "mean": dict(zip(dimensions, labels.mean(axis=0).round(4).tolist())),
            "std": dict(zip(dimensions, labels.std(axis=0).round(4).tolist()))}


def read_articles(path):
    """Articles to score (either shape; labels are not needed): [{id, title, text}], ids unique. `-` is stdin."""
    if str(path) != "-" and not Path(path).is_file():
        raise InputError(path, "input file not found")
    articles, seen = [], {}
    for number, obj in read_jsonl(path):
        article = article_fields(number, obj, source_name(path))
        claim_id(seen, article["id"], number, source_name(path))
        articles.append(article)
    if not articles:
        raise InputError(source_name(path), "no records")
    return articles
