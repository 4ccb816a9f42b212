"""Small pieces every stage shares: params, JSONL I/O, atomic writes, and the input-error convention."""
import json
import math
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml


class InputError(Exception):
    """Bad input the user must fix. Printed as `error: FILE:LINE: FIELD: message`, exit status 2."""

    def __init__(self, path, message, line=None, field=None):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")


def run_main(main):
    """Run a stage's main(); turn InputError into a one-line message and a non-zero exit."""
    try:
        main()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def registry_entry(registry, name, allowed_keys, params_path, kind, name_field, field):
    """A copy of registry[name] (an embedder entry, a finetune profile), checked so that a typo fails with the
    file and field before any model loads: the name exists, every key is allowed, `source` is a non-empty string."""
    registry = registry or {}
    if isinstance(name, str) and "." in name:
        # DVC splits params paths at dots: `embedders.bge-v1.5` would be looked up as embedders -> bge-v1 -> 5.
        raise InputError(params_path, f"{kind} name {name!r} contains '.': DVC cannot track it as a parameter; "
                         f"use '_' or '-' instead", field=name_field)
    if name not in registry:
        raise InputError(params_path, f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}",
                         field=name_field)
    entry = dict(registry[name] or {})
    unknown = set(entry) - set(allowed_keys)
    if unknown:
        raise InputError(params_path, f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed_keys)}", field=field)
    if not isinstance(entry.get("source"), str) or not entry["source"]:
        raise InputError(params_path, "needs a source (hub id, local directory, package:<module> or a GGUF file)",
                         field=field)
    return entry


def load_params(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def as_list(value):
    """`probe: mlp` and `probe: [ridge, mlp]` both mean a list of names (so `dvc exp run -S probe=mlp` works)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def check_names(names, registry, params_path, key):
    """Every name selected under `key` must have an entry in `registry`."""
    for name in names:
        if name not in registry:
            raise InputError(params_path, f"unknown name {name!r}; known: {', '.join(sorted(registry))}", field=key)


def read_jsonl(path):
    """Yield (line_number, object) for every non-blank line; malformed JSON names its line."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(path, f"malformed JSON at column {err.colno}: {err.msg.removesuffix(' at')}",
                                 line=number) from None
            if not isinstance(obj, dict):
                raise InputError(path, "each line must be a JSON object", line=number)
            yield number, obj


def _atomic(path, write, mode):
    """Write to a temporary file beside `path`, then rename: a failure never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextmanager
def staged_directory(out_dir):
    """Yield `<out_dir>.partial` to build a whole output folder in; on success it replaces `out_dir`.

    On failure the staging folder is removed and `out_dir` is left as it was: no half-written output survives,
    and nothing already produced is lost.
    """
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)   # left by a run that was killed
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)


def write_json(path, obj):
    _atomic(path, lambda f: (json.dump(clean_floats(obj), f, indent=2, allow_nan=False), f.write("\n")), "w")


def write_jsonl(path, rows):
    _atomic(path, lambda f: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "w")


def write_bytes(path, save):
    """`save(f)` writes binary content (np.save, torch.save) through the same atomic rename."""
    _atomic(path, save, "wb")


def clean_floats(obj):
    """JSON has no NaN: undefined figures (e.g. Spearman of a constant prediction) become null."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_floats(v) for v in obj]
    return obj


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_split(prepared_dir, split):
    """The normalised records of one split: list of {id, title, text, labels}."""
    return [obj for _, obj in read_jsonl(Path(prepared_dir) / f"{split}.jsonl")]


def load_schema(prepared_dir):
    """{"dimensions": [...], "score_range": [lo, hi]} as written by prepare."""
    return read_json(Path(prepared_dir) / "schema.json")


SPLITS = ("train", "val", "test")


def save_predictions(path, ids, scores):
    """Test predictions as evaluate reads them: the ids in split order and one row of scores per id."""
    write_bytes(path, lambda f: np.savez(f, ids=np.array(ids), scores=scores.astype(np.float64)))


def latency(predict, items, repeats=20):
    """Seconds per item of predict(items[i:i+1]) one item at a time, and of predict(items) in one batch.

    Used for the scorers (texts -> scores: embedder + probe, or base + adapter) and for a probe alone
    (embeddings -> scores)."""
    predict(items[:1])                             # warm-up: first call pays one-off allocations
    start = time.perf_counter()
    for i in range(repeats):
        predict(items[i % len(items):i % len(items) + 1])
    single = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    predict(items)
    return {"single": single, "batched": (time.perf_counter() - start) / len(items)}
