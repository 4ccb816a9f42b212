"""embed@<model>: encode the prepared splits with one frozen embedder; write float32 matrices and a meta file."""
import argparse
import time

import numpy as np

from common import (SPLITS, InputError, load_params, load_split, registry_entry, run_main, staged_directory,
                    write_bytes, write_json)
from embedders import KINDS, load_embedder, model_input, token_counts
from hardware import DTYPES

ENTRY_KEYS = {"source", "kind", "prefix", "max_tokens", "batch_size", "normalize", "dtype", "device"}


def embedder_config(params, model, params_path="params.yaml"):
    """The registry entry for `model`, checked so a typo fails here rather than deep inside a library."""
    field = f"embedders.{model}"
    config = registry_entry(params.get("embedders"), model, ENTRY_KEYS, params_path, "model", "models", field)
    if config.get("kind", KINDS[0]) not in KINDS:
        raise InputError(params_path, f"kind must be one of {KINDS}", field=field)
    if config.get("dtype", "auto") not in DTYPES:
        raise InputError(params_path, f"dtype must be one of {DTYPES}, not {config['dtype']!r}", field=f"{field}.dtype")
    return config


def embed(model, prepared_dir, out_dir, meta_path, params, params_path="params.yaml"):
    config = embedder_config(params, model, params_path)
    texts = {split: [model_input(r) for r in load_split(prepared_dir, split)] for split in SPLITS}
    embedder = load_embedder(config)
    all_texts = [embedder.prefix + t for split in SPLITS for t in texts[split]]
    share, tokens = token_counts(embedder.tokenizer, all_texts, embedder.max_tokens)

    # One encode call over every split: batches of similar length form across the whole set, as in a
    # plain SentenceTransformer.encode; the matrix is cut back into splits afterwards.
    start = time.perf_counter()
    matrix = embedder.encode([t for split in SPLITS for t in texts[split]])
    seconds = time.perf_counter() - start
    bounds = np.cumsum([0] + [len(texts[split]) for split in SPLITS])
    matrices = {split: matrix[bounds[i]:bounds[i + 1]] for i, split in enumerate(SPLITS)}

    with staged_directory(out_dir) as staging:
        for split, matrix in matrices.items():
            write_bytes(staging / f"{split}.npy", lambda f, m=matrix: np.save(f, m))
    n = len(all_texts)
    meta = {"dimension": int(embedder.dimension), "max_tokens": embedder.max_tokens, "device": embedder.device,
            "dtype": embedder.dtype, "hardware": embedder.hardware, "texts": n, "tokens": tokens,
            "truncated_share": round(share, 4), "seconds": round(seconds, 3), "texts_per_second": round(n / seconds, 2) if seconds > 0 else None,
            "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None}
    # Timing lives in a separate file: the matrices stay byte-identical run to run, so an unchanged
    # embedding never re-triggers the probes downstream.
    write_json(meta_path, meta)
    return matrices, meta


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True, help="a key of embedders in params")
    parser.add_argument("--prepared", required=True, help="directory written by prepare")
    parser.add_argument("--out", required=True, help="directory for {train,val,test}.npy")
    parser.add_argument("--meta", required=True, help="JSON file for dimension, truncation and speed")
    args = parser.parse_args()
    _, meta = embed(args.model, args.prepared, args.out, args.meta, load_params(args.params), args.params)
    print(f"embed {args.model}: {meta}")


if __name__ == "__main__":
    run_main(main)
