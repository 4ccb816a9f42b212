"""Benchmark: the committed pipeline on ELLIPSE (2,571 essays, 7 scores on 1-5) by changing params only.

Runs `dvc repro` in a fresh clone of HEAD with data.raw pointing at the ELLIPSE JSONL (score_range auto),
prints the per-candidate table beside a predictor that always outputs the training mean, and times the
embed stage against a plain SentenceTransformer.encode of the same texts in the same run.

usage: python bench/ellipse.py [--data ../shared/datasets/ellipse/data.jsonl] [--limit N]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "stages"))
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "ellipse" / "data.jsonl"


def run(cmd, cwd, env):
    print(f"$ {cmd}", flush=True)
    subprocess.run(cmd, cwd=cwd, env=env, shell=True, check=True)


def throughput(work, model, n_texts, rounds):
    """Texts/s of the embed stage's encoder and of a bare SentenceTransformer.encode, same texts and settings.

    Both run in this process and alternate round by round, so that both see the same machine load (a shared
    2-core machine varies by 10-20% from minute to minute); the figures are the medians over the rounds.
    """
    from common import SPLITS, load_params, load_split
    from embedders import load_embedder, model_input, resolve_source
    from sentence_transformers import SentenceTransformer
    entry = load_params(work / "params.yaml")["embedders"][model]
    texts = [model_input(r) for s in SPLITS for r in load_split(work / "data" / "prepared", s)][:n_texts]
    stage = load_embedder(entry)
    plain = SentenceTransformer(resolve_source(entry["source"]))
    plain.max_seq_length = entry["max_tokens"]
    rates = {"stage": [], "plain": []}
    for _ in range(rounds):
        for side, encode in (("stage", lambda: stage.encode(texts, show_progress=False)),
                             ("plain", lambda: plain.encode(texts, batch_size=entry.get("batch_size", 32)))):
            start = time.perf_counter()
            encode()
            rates[side].append(len(texts) / (time.perf_counter() - start))
    return len(texts), {side: float(np.median(r)) for side, r in rates.items()}, rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N records (0: all)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating throughput measurements per side")
    parser.add_argument("--throughput-texts", type=int, default=600, help="texts per throughput measurement")
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"skipped: {args.data} not found (the benchmark needs the ELLIPSE JSONL)")
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-ellipse-"))
    work = tmp / "repo"
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp / "site-cache")}
    run(f"git clone -q {REPO} {work}", tmp, env)
    data = args.data.resolve()
    if args.limit:
        data = tmp / "ellipse.jsonl"
        data.write_text("".join(args.data.read_text().splitlines(keepends=True)[:args.limit]))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"].update(raw=str(data), score_range="auto")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("dvc repro", work, env)

    from common import load_split
    train, test = (np.array([r["labels"] for r in load_split(work / "data/prepared", s)]) for s in ("train", "test"))
    mean_mae = float(np.abs(test - train.mean(axis=0)).mean())
    summary = json.loads((work / "metrics/summary.json").read_text())
    print(f"\nELLIPSE: {len(train)} train / {len(test)} test essays, {train.shape[1]} dimensions")
    print(f"{'model':24s} {'probe':10s} {'MAE':>7s} {'RMSE':>7s} {'Spearman':>9s} {'vs mean':>8s}")
    rows = [(m, p, v) for m, probes in summary["candidates"].items() for p, v in probes.items()]
    for model, probe, m in sorted(rows, key=lambda r: r[2]["mae"]):
        print(f"{model:24s} {probe:10s} {m['mae']:7.4f} {m['rmse']:7.4f} {m['spearman']:9.4f} "
              f"{m['mae'] - mean_mae:+8.4f}")
    print(f"{'training mean':35s} {mean_mae:7.4f}")
    best = summary["best"]
    print(f"best: {best['model']} / {best['probe']} MAE {best['mae']:.4f} "
          f"({'beats' if best['mae'] < mean_mae else 'does NOT beat'} the training mean {mean_mae:.4f})")

    for model in params["models"]:
        in_repro = json.loads((work / "metrics/embed" / f"{model}.json").read_text())["texts_per_second"]
        n, median, rates = throughput(work, model, args.throughput_texts, args.rounds)
        print(f"embed throughput {model}, {n} texts x {args.rounds} alternating rounds: stage encoder "
              f"{median['stage']:.2f} texts/s, plain SentenceTransformer.encode {median['plain']:.2f} texts/s, "
              f"ratio {median['stage'] / median['plain']:.3f}")
        print(f"  rounds, stage: {[round(r, 1) for r in rates['stage']]}; plain: {[round(r, 1) for r in rates['plain']]}; "
              f"embed stage inside dvc repro (all {sum(1 for _ in open(data))} texts): {in_repro:.2f} texts/s")


if __name__ == "__main__":
    main()
