"""The shapes of what the embed, probe and finetune stages write and the later stages (evaluate, report, the
scorer) read: defined here once.

  <embeddings>/<model>/{train,val,test}.npy   float32, one row per record of the split (.npz: sparse CSR, tfidf);
                                              fitted/<model>.json: a fitted embedder's state (tfidf)
  <probes>/<model>/<probe>/                   the probe's own files (news_probes.probes: one folder per seed),
                                              scoring.json, {val,test}_predictions.npz, history.json (the
                                              first seed's epoch curves, when the probe has them)
  <stacked>/                                  the stacked candidate: scoring.json (members, weights),
                                              {val,test}_predictions.npz (val: cross-fitted)
  <adapters>/<profile>/                       the adapter and score head (news_probes.lora), scoring.json,
                                              {val,test}_predictions.npz
  <adapters>/none/                            no baseline (`finetune.profile: none`): the NO_BASELINE marker
  <curve>/{val,test,screens}.csv              the route stage's curves and screens compared (CURVE_COLUMNS,
                                              SCREEN_COLUMNS)
  <routed>/                                   the route stage's hybrid: scoring.json (screen and adapter folders
                                              relative to it, rule, threshold), {val,test}_predictions.npz at the
                                              chosen threshold; without a baseline, the NOT_ROUTED marker
  <meta>/<model>.json                         per-model metrics of a stage (embed: speed, fit: fit and latency)
  <metrics>/<model>/<probe>.json              evaluate's metrics of one candidate

scoring.json is all the scorer needs besides the folder itself: `kind` (probe, adapter or stack), the dimension
names and score range, and for a probe its embedder's registry entry, for an adapter its profile and base model,
for the stack its members' probe folders (relative to it) and weights, for the hybrid (route) its screen's and
adapter's folders (relative to it), rule, threshold and filter weights.
"""
from pathlib import Path

import numpy as np

from news_probes.io import InputError, read_json, reading, write_bytes, write_json
from news_probes.params import STACKED

SCORING = "scoring.json"
HISTORY = "history.json"
NO_PROFILE = "none"         # `finetune.profile: none`: no adapter is trained, the comparison has no baseline
NO_BASELINE = "NO_BASELINE"
NOT_ROUTED = "NOT_ROUTED"   # the route stage's output without a baseline to route to
PREDICTED_SPLITS = ("val", "test")      # validation chooses the best candidate, test measures it once
SCORER_KINDS = ("probe", "adapter", "stack", "route")
FITTED = "fitted"           # a fitted embedder's state (tfidf): in its embeddings folder and every probe folder


def embeddings_path(directory, split, sparse=False):
    return Path(directory) / f"{split}.{'npz' if sparse else 'npy'}"


def save_embeddings(directory, split, matrix):
    """A dense matrix as .npy; a sparse one (tfidf) as scipy's CSR .npz."""
    import scipy.sparse
    sparse = scipy.sparse.issparse(matrix)
    write = (lambda f: scipy.sparse.save_npz(f, matrix.tocsr())) if sparse else (lambda f: np.save(f, matrix))
    write_bytes(embeddings_path(directory, split, sparse), write)


def load_embeddings(directory, split, n_records):
    """One split's matrix (dense, or sparse CSR for tfidf), checked as embed writes it: float32, finite, one row
    per record of the prepared split (a mismatch is refused, not misaligned)."""
    import scipy.sparse
    path = embeddings_path(directory, split)
    if embeddings_path(directory, split, sparse=True).is_file():
        path = embeddings_path(directory, split, sparse=True)
        with reading(path):
            matrix = scipy.sparse.load_npz(path).tocsr()
    elif not path.is_file():
        raise InputError(path, "embeddings missing: run `dvc repro` (or `dvc pull`) for this model")
    else:
        with reading(path):
            matrix = np.load(path)
    values = matrix.data if scipy.sparse.issparse(matrix) else matrix
    if matrix.ndim != 2 or matrix.dtype != np.float32:
        raise InputError(path, f"dtype {matrix.dtype}, shape {matrix.shape}, expected float32 records x features")
    if matrix.shape[0] != n_records:
        raise InputError(path, f"{matrix.shape[0]} rows for {n_records} records: re-run embed")
    if not np.isfinite(values).all():
        raise InputError(path, "values that are not finite: re-run embed (or `news-probes verify` if it came from "
                               "the DVC cache)")
    return matrix


def fitted_path(directory, model):
    return Path(directory) / FITTED / f"{model}.json"


def copy_fitted(source_dir, target_dir):
    """The fitted embedders' states of an embeddings folder, copied to where the next reader needs them."""
    import shutil
    if (Path(source_dir) / FITTED).is_dir():
        shutil.copytree(Path(source_dir) / FITTED, Path(target_dir) / FITTED, dirs_exist_ok=True)


def probe_dir(probes_root, model, probe):
    return Path(probes_root) / model / probe


def candidate_dir(probes_root, stacked_root, candidate):
    """Where a candidate's predictions lie: its probe folder, or the stack stage's folder for the stacked one."""
    return Path(stacked_root) if candidate == STACKED else probe_dir(probes_root, *candidate)


def adapter_dir(adapters_root, profile):
    return Path(adapters_root) / str(profile)


def model_file(directory, model):
    """<directory>/<model>.json: the embed stage's meta, the probe stage's fit metrics."""
    return Path(directory) / f"{model}.json"


def candidate_metrics_file(metrics_dir, model, probe):
    return Path(metrics_dir) / model / f"{probe}.json"


def write_scoring(directory, kind, dimensions, score_range, **details):
    if kind not in SCORER_KINDS:
        raise ValueError(f"kind must be one of {SCORER_KINDS}, not {kind!r}")
    write_json(Path(directory) / SCORING, {"kind": kind, **details, "dimensions": list(dimensions),
                                           "score_range": list(score_range)})


def read_scoring(directory):
    """The scoring.json of a probe or adapter folder, with its kind checked."""
    path = Path(directory) / SCORING
    if not path.is_file():
        raise InputError(directory, f"no {SCORING} here: not a trained probe or adapter folder (run `dvc repro` "
                                    f"or `dvc pull` for it; probes are in models/probes/<model>/<probe>, adapters "
                                    f"in models/adapters/<profile>)")
    info = read_json(path)
    if info.get("kind") not in SCORER_KINDS:
        raise InputError(path, f"must be one of {SCORER_KINDS}, not {info.get('kind')!r}", field="kind")
    return info


def predictions_path(directory, split):
    return Path(directory) / f"{split}_predictions.npz"


def save_predictions(directory, split, ids, scores, seed_scores=None):
    """One split's predictions as evaluate reads them: the ids in split order, one row of scores per id, and for
    a seed ensemble each seed's own predictions (seeds x ids x dimensions) beside their mean."""
    arrays = {"ids": np.array(ids), "scores": np.asarray(scores, dtype=np.float64)}
    if seed_scores is not None:
        arrays["seed_scores"] = np.asarray(seed_scores, dtype=np.float64)
    write_bytes(predictions_path(directory, split), lambda f: np.savez(f, **arrays))


def load_predictions(directory, split, ids):
    """{"scores", "seed_scores" (None for a single model)} in split order; a file written for another split is
    refused, not misaligned."""
    path = predictions_path(directory, split)
    if not path.is_file():
        raise InputError(path, "predictions missing: run `dvc repro` (or `dvc pull`) for this candidate")
    with reading(path), np.load(path) as data:
        saved_ids, scores = data["ids"].tolist(), data["scores"]
        seed_scores = data["seed_scores"] if "seed_scores" in data.files else None
    if saved_ids != list(ids):
        raise InputError(path, f"ids do not match the prepared {split} split: re-run its stage", field="ids")
    if scores.ndim != 2 or scores.shape[0] != len(ids) or not np.isfinite(scores).all():
        raise InputError(path, f"shape {scores.shape}, expected finite ({len(ids)}, dimensions)", field="scores")
    if seed_scores is not None and (seed_scores.ndim != 3 or seed_scores.shape[1:] != scores.shape):
        raise InputError(path, f"shape {seed_scores.shape}, expected (seeds, {', '.join(map(str, scores.shape))})",
                         field="seed_scores")
    return {"scores": scores, "seed_scores": seed_scores}


# The route stage's tables (<curve>/<name>.csv): the curve of each split, one row per routing point
# (news_probes.routing.curve, with costs), and the screens compared (one row per candidate as the screen).
CURVE_COLUMNS = ["point", "threshold", "share_routed", "mae", "rmse", "recall_high", "false_negative_rate",
                 "cost_ms", "speedup", "cost_single_ms", "speedup_single"]
SCREEN_COLUMNS = ["screen", "threshold", "val_share_routed", "share_routed", "mae", "recall_high",
                  "false_negative_rate", "probe_ms", "cost_ms", "speedup"]


def save_table(directory, name, columns, rows):
    """Rows as <directory>/<name>.csv, numbers to 4 decimals, None as an empty cell."""
    import csv
    import io
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    write_bytes(Path(directory) / f"{name}.csv", lambda f: f.write(text.getvalue().encode("utf-8")))


def load_table(directory, name):
    """The rows save_table wrote: numbers as floats, empty cells as None, names as strings."""
    import csv

    def value(cell):
        try:
            return float(cell) if cell != "" else None
        except ValueError:
            return cell
    with open(Path(directory) / f"{name}.csv", encoding="utf-8", newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_no_baseline(directory, reason):
    """The whole output of a finetune stage that trains nothing: a marker that says why."""
    (Path(directory) / NO_BASELINE).write_text(reason + "\n", encoding="utf-8")


def write_history(directory, history):
    write_json(Path(directory) / HISTORY, history)


def read_history(directory):
    """The epoch curves a probe wrote ([] for probes without epochs)."""
    path = Path(directory) / HISTORY
    return read_json(path) if path.is_file() else []
