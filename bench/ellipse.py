"""Benchmark: the committed pipeline on ELLIPSE (2,571 essays, 7 scores on 1-5) by changing params only.

Runs `dvc repro` in a fresh clone of HEAD with data.raw pointing at the ELLIPSE JSONL (score_range auto), the
filter set for its 1-5 scale (threshold 3.5: the top quarter of essays; tiers high from 4, medium from 3), and
`finetune.profile` from --profile (default none: the CPU adapter on 1,800 essays would take tens of minutes).
Prints the per-candidate table (validation MAE, which chooses the best; test MAE; seed sd; recall of the
threshold and of the high tier) beside a predictor that always outputs the training mean, and the embed stage's
own speed. Throughput against a plain SentenceTransformer.encode is bench/performance.py's.

The grid is params.yaml's (models, combined, probe, and the stacked candidate) unless --models / --combined
replace it, e.g. with the larger offline embedder (models/base/ of this checkout is linked into the clone):
  python bench/ellipse.py --models all-MiniLM-L6-v2 all-mpnet-base-v2 tfidf \
      --combined all-MiniLM-L6-v2+all-mpnet-base-v2 all-mpnet-base-v2+tfidf

usage: python bench/ellipse.py [--data ../shared/datasets/ellipse/data.jsonl] [--limit N] [--profile none]
                               [--models M ...] [--combined A+B ...] [--set KEY=VALUE ...]
"""
import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "ellipse" / "data.jsonl"


def run(cmd, cwd, env):
    print(f"$ {cmd}", flush=True)
    subprocess.run(cmd, cwd=cwd, env=env, shell=True, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N records (0: all)")
    parser.add_argument("--profile", default="none", help="finetune.profile (none: no baseline)")
    parser.add_argument("--models", nargs="+", help="replace params' models")
    parser.add_argument("--combined", nargs="*", help="replace params' combined: names first+second")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="set one params entry, e.g. embedders.all-mpnet-base-v2.truncation=head")
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"skipped: {args.data} not found (the benchmark needs the ELLIPSE JSONL)")
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-ellipse-"))
    work = tmp / "repo"
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp / "site-cache")}
    run(f"git clone -q {REPO} {work}", tmp, env)
    if (REPO / "models" / "base").is_dir():
        (work / "models").mkdir(exist_ok=True)
        (work / "models" / "base").symlink_to(REPO / "models" / "base")
    data = args.data.resolve()
    if args.limit:
        data = tmp / "ellipse.jsonl"
        data.write_text("".join(args.data.read_text().splitlines(keepends=True)[:args.limit]))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"].update(raw=str(data), score_range="auto")
    params["filter"] = {"weights": None, "threshold": 3.5, "tiers": {"high": 4.0, "medium": 3.0}}
    params["finetune"]["profile"] = args.profile
    if args.models:
        params["models"] = args.models
    if args.combined is not None:
        params["combined"] = {name: name.split("+", 1) for name in args.combined}
    for assignment in args.set:
        key, value = assignment.split("=", 1)
        *parents, last = key.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[last] = yaml.safe_load(value)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("dvc repro", work, env)

    from news_probes.data import load_split
    train, test = (np.array([r["labels"] for r in load_split(work / "data/prepared", s)]) for s in ("train", "test"))
    mean_mae = float(np.abs(test - train.mean(axis=0)).mean())
    summary = json.loads((work / "metrics/summary.json").read_text())
    print(f"\nELLIPSE: {len(train)} train / {len(test)} test essays, {train.shape[1]} dimensions")
    print(f"{'model':24s} {'probe':10s} {'val MAE':>8s} {'MAE':>7s} {'seed sd':>8s} {'RMSE':>7s} {'Spearman':>9s} "
          f"{'recall':>7s} {'high-tier recall':>17s} {'vs mean':>8s}")
    rows = [(m, p, v) for m, probes in summary["candidates"].items() for p, v in probes.items()]
    baseline = summary["baseline"]
    if baseline["measured"]:
        rows.append(("fine-tuned", baseline["profile"], {**baseline, "seed_sd": None}))
    for model, probe, m in sorted(rows, key=lambda r: r[2]["val_mae"]):
        sd = "-" if m["seed_sd"] is None else f"{m['seed_sd']:.4f}"
        print(f"{model:24s} {probe:10s} {m['val_mae']:8.4f} {m['mae']:7.4f} {sd:>8s} {m['rmse']:7.4f} "
              f"{m['spearman']:9.4f} {m['recall']:7.3f} {m['high_tier_recall']:17.3f} {m['mae'] - mean_mae:+8.4f}")
    print(f"{'training mean':35s} {'':8s} {mean_mae:7.4f}")
    best, test_best = summary["best"], summary["test_best"]
    print(f"best on validation: {best['model']} / {best['probe']} test MAE {best['mae']:.4f} "
          f"({'beats' if best['mae'] < mean_mae else 'does NOT beat'} the training mean {mean_mae:.4f}); "
          f"the test split alone would have picked {test_best['model']} / {test_best['probe']} "
          f"({test_best['mae']:.4f})")

    for model in params["models"]:
        meta = json.loads((work / "metrics/embed" / f"{model}.json").read_text())
        print(f"embed stage {model}: {meta['texts']} texts in {meta['seconds']:.1f} s, {meta['texts_per_second']:.1f} "
              f"texts/s, {meta['dtype']} on {meta['device']}, truncation {meta.get('truncation')}, windows per text "
              f"{meta.get('windows_per_text')}")
    print(f"stack weights: {json.loads((work / 'metrics/stack.json').read_text())['weights']}")

if __name__ == "__main__":
    main()
