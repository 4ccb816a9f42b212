"""The shapes of what the embed, probe and finetune stages write and the later stages (evaluate, report, the
scorer) read: defined here once.

  <embeddings>/<model>/{train,val,test}.npy   float32, one row per record of the split
  <probes>/<model>/<probe>/                   the probe's own files (news_probes.probes), scoring.json,
                                              test_predictions.npz, history.json (epoch curves, when it has them)
  <adapters>/<profile>/                       the adapter and score head (news_probes.lora), scoring.json,
                                              test_predictions.npz
  <meta>/<model>.json                         per-model metrics of a stage (embed: speed, fit: fit and latency)
  <metrics>/<model>/<probe>.json              evaluate's metrics of one candidate

scoring.json is all the scorer needs besides the folder itself: `kind` (probe or adapter), the dimension names
and score range, and for a probe its embedder's registry entry, for an adapter its profile and base model.
"""
from pathlib import Path

import numpy as np

from news_probes.io import InputError, read_json, write_bytes, write_json

SCORING = "scoring.json"
PREDICTIONS = "test_predictions.npz"
HISTORY = "history.json"
SCORER_KINDS = ("probe", "adapter")


def embeddings_path(directory, split):
    return Path(directory) / f"{split}.npy"


def save_embeddings(directory, split, matrix):
    write_bytes(embeddings_path(directory, split), lambda f: np.save(f, matrix))


def load_embeddings(directory, split, n_records):
    """One split's matrix; a row count that does not match the prepared split is refused, not misaligned."""
    path = embeddings_path(directory, split)
    if not path.is_file():
        raise InputError(path, "embeddings missing: run `dvc repro` (or `dvc pull`) for this model")
    matrix = np.load(path)
    if len(matrix) != n_records:
        raise InputError(path, f"{len(matrix)} rows for {n_records} records: re-run embed")
    return matrix


def probe_dir(probes_root, model, probe):
    return Path(probes_root) / model / probe


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


def save_predictions(directory, ids, scores):
    """Test predictions as evaluate reads them: the ids in split order and one row of scores per id."""
    write_bytes(Path(directory) / PREDICTIONS,
                lambda f: np.savez(f, ids=np.array(ids), scores=np.asarray(scores, dtype=np.float64)))


def load_predictions(directory, test_ids):
    """Predictions in test-split order; a file written for another split is refused, not misaligned."""
    path = Path(directory) / PREDICTIONS
    if not path.is_file():
        raise InputError(path, "predictions missing: run `dvc repro` (or `dvc pull`) for this candidate")
    with np.load(path) as data:
        ids, scores = data["ids"].tolist(), data["scores"]
    if ids != list(test_ids):
        raise InputError(path, "ids do not match the prepared test split: re-run its stage", field="ids")
    return scores


def write_history(directory, history):
    write_json(Path(directory) / HISTORY, history)


def read_history(directory):
    """The epoch curves a probe wrote ([] for probes without epochs)."""
    path = Path(directory) / HISTORY
    return read_json(path) if path.is_file() else []
