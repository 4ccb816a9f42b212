"""The prepared data every stage after prepare reads: one JSONL per split of {id, title, text, labels} and
schema.json (dimension names, score range), and the text a model sees of each article."""
from pathlib import Path

from news_probes.io import read_json, read_jsonl, write_json, write_jsonl

SPLITS = ("train", "val", "test")
SCHEMA = "schema.json"


def split_path(prepared_dir, split):
    return Path(prepared_dir) / f"{split}.jsonl"


def write_prepared(directory, splits, dimensions, score_range):
    """{split: records} and the schema into `directory` (a staging folder: see io.staged_directory)."""
    for split, rows in splits.items():
        write_jsonl(split_path(directory, split), rows)
    write_json(Path(directory) / SCHEMA, {"dimensions": dimensions, "score_range": score_range})


def load_split(prepared_dir, split):
    """The normalised records of one split: list of {id, title, text, labels}."""
    return [obj for _, obj in read_jsonl(split_path(prepared_dir, split))]


def load_schema(prepared_dir):
    """{"dimensions": [...], "score_range": [lo, hi]} as written by prepare."""
    return read_json(Path(prepared_dir) / SCHEMA)


def model_input(record):
    """The text a model sees: title and body, as the study built it."""
    return f"{record['title']}\n\n{record['text']}" if record["title"] else record["text"]
