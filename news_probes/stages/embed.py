"""embed@<model>: encode the prepared splits with one frozen embedder; write float32 matrices and a meta file
with the encoder's speed (whole splits, and single-article latency) measured on the model it loaded, and what it
saw of the texts (share cut, truncation setting, windows per text). A fitted embedder (tfidf) is fitted on the
train split only and its state saved beside the matrices."""
import argparse
import time

import numpy as np

from news_probes.artifacts import save_embeddings
from news_probes.data import SPLITS, load_split, model_input
from news_probes.embedders import embedder_config, engine, fitted_path, load_embedder
from news_probes.io import run_main, staged_directory, write_json
from news_probes.log import logger
from news_probes.params import load_params
from news_probes.timing import latency_ms

LATENCY_ARTICLES = 32     # test articles encoded one at a time, then in one batch


def matrix_bytes(matrix):
    """Memory of a dense or sparse (CSR) matrix."""
    if hasattr(matrix, "indptr"):
        return int(matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes)
    return int(matrix.nbytes)


def embed(model, prepared_dir, out_dir, meta_path, params, params_path="params.yaml"):
    config = embedder_config(params, model, params_path)
    texts = {split: [model_input(r) for r in load_split(prepared_dir, split)] for split in SPLITS}
    embedder = load_embedder(config)
    all_texts = [t for split in SPLITS for t in texts[split]]

    start = time.perf_counter()
    if hasattr(embedder, "fit"):
        embedder.fit(texts["train"])            # never the validation or test texts
    fit_seconds = time.perf_counter() - start
    # One encode call over every split: batches of similar length form across the whole set, as in a
    # plain SentenceTransformer.encode; the matrix is cut back into splits afterwards.
    matrix = embedder.encode(all_texts, show_progress=True)
    seconds = time.perf_counter() - start
    stats = embedder.stats_
    bounds = np.cumsum([0] + [len(texts[split]) for split in SPLITS])
    matrices = {split: matrix[bounds[i]:bounds[i + 1]] for i, split in enumerate(SPLITS)}
    timing = latency_ms(lambda batch: embedder.encode(batch, show_progress=False), texts["test"][:LATENCY_ARTICLES])

    with staged_directory(out_dir) as staging:
        for split, matrix in matrices.items():
            save_embeddings(staging, split, matrix)
        if hasattr(embedder, "save"):
            embedder.save(fitted_path(staging, model))
    n, tokens = len(all_texts), stats["tokens"]
    meta = {"kind": config.get("kind", "sentence-transformers"), "dimension": int(embedder.dimension),
            "max_tokens": embedder.max_tokens,
            "truncation": None if config.get("kind") == "tfidf" else config.get("truncation", "head"),
            "device": embedder.device, "backend": embedder.backend, "dtype": embedder.dtype, "hardware": embedder.hardware, "texts": n,
            "tokens": tokens, "truncated_share": round(stats["truncated_share"], 4),
            "windows_per_text": stats["windows_per_text"], "fit_seconds": round(fit_seconds, 3),
            "seconds": round(seconds, 3), "bytes": sum(matrix_bytes(m) for m in matrices.values()),
            "texts_per_second": round(n / seconds, 2) if seconds > 0 else None,
            "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 and tokens else None,
            "latency_ms": timing}
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
    logger.info(f"embed {args.model}: {meta['texts']} texts in {meta['seconds']} s ({meta['texts_per_second']} "
                f"texts/s; {engine(meta['dtype'], meta['backend'], meta['device'])}), {meta['dimension']} dimensions, "
                f"{meta['truncated_share']:.1%} truncated "
                f"(details: {args.meta})")
    logger.debug(f"embed {args.model}: {meta}")


if __name__ == "__main__":
    run_main(main)
