"""Benchmark: what each artifact kind weighs in remote storage, and how long push and pull take.

1. Sizes of this workspace's artifacts (the sample, after `make run`): raw dataset, prepared splits,
   embeddings per model, each probe, metrics, report and plots.
2. The same artifacts for 10,000 articles and a 1,024-d model, built for real in a temp dir: the raw file
   repeats the sample's articles with distinct ids (so sizes per article are the sample's), `prepare` splits it,
   embeddings are 1,024-d float32 arrays (random features that carry the labels linearly, plus noise, so the
   probes learn and LightGBM grows a realistic number of trees), and the probe stage code fits and saves every
   probe with this repository's params.
3. `dvc push` to an empty local remote and `dvc pull` into a fresh clone with an empty cache, for the sample.

usage: python bench/storage.py [--articles 10000] [--dimension 1024]   (after `make run`)
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


def size(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def artifact_sizes(root, raw, models):
    root = Path(root)
    rows = [("raw dataset", raw, size(root / raw)), ("prepared splits", "data/prepared", size(root / "data/prepared"))]
    for model in models:
        rows.append((f"embeddings ({model})", f"data/embeddings/{model}", size(root / "data/embeddings" / model)))
        for probe_dir in sorted(d for d in (root / "models/probes" / model).iterdir() if d.is_dir()):
            rows.append((f"probe {probe_dir.name} ({model})", probe_dir.relative_to(root).as_posix(), size(probe_dir)))
    rows.append(("metrics", "metrics", size(root / "metrics")))
    rows.append(("report and plots", "reports, plots", size(root / "reports") + size(root / "plots")))
    return rows


def print_table(title, rows):
    print(f"\n{title}\n")
    print("| artifact | path | size |\n|---|---|---|")
    for kind, path, n in rows:
        print(f"| {kind} | `{path}` | {human(n)} |")
    print(f"| **total** | | **{human(sum(r[2] for r in rows))}** |")


def repeat_sample(path, n_articles, params):
    """A raw JSONL of n_articles: the sample's articles repeated in order, each copy with its own id."""
    from news_probes.io import read_jsonl
    sample = [record for _, record in read_jsonl(REPO / params["data"]["raw"])]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_articles):
            f.write(json.dumps({**sample[i % len(sample)], "id": f"a{i:06d}"}) + "\n")
    return path


def scaled_artifacts(work, n_articles, dimension, params):
    """Build the 10k-article artifacts in `work` with the stage code; return their size rows."""
    from news_probes.data import load_split
    from news_probes.stages.prepare import prepare
    from news_probes.stages.probe import fit_probes
    raw = repeat_sample(work / "data" / "raw" / "articles.jsonl", n_articles, params)
    prepared = work / "data" / "prepared"
    prepare(raw, prepared, work / "metrics" / "data.json", params)

    rng = np.random.default_rng(0)
    model = f"synthetic-{dimension}d"
    emb = work / "data" / "embeddings" / model
    emb.mkdir(parents=True)
    n_dims = len(json.loads((prepared / "schema.json").read_text())["dimensions"])
    mixing = rng.normal(size=(n_dims, dimension)) / np.sqrt(n_dims)
    for split in ("train", "val", "test"):
        labels = np.array([r["labels"] for r in load_split(prepared, split)])
        features = (labels - 5) / 3 @ mixing + rng.normal(scale=1.0, size=(len(labels), dimension))
        np.save(emb / f"{split}.npy", features.astype(np.float32))
    params = {**params, "embedders": {model: {"source": "none: synthetic features"}}}
    fit = fit_probes(model, prepared, emb, work / "models" / "probes" / model, work / "metrics" / "fit" / f"{model}.json",
                     params)
    # The report and plots do not grow with the dataset beyond the per-article plot rows: left out here.
    (work / "reports").mkdir()
    (work / "plots").mkdir()
    rows = [row for row in artifact_sizes(work, "data/raw/articles.jsonl", [model]) if row[0] != "report and plots"]
    return rows, fit


def push_pull_times(tmp):
    """Seconds for `dvc push` of HEAD's outputs to an empty local remote and `dvc pull` into a fresh clone."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "HOME": str(tmp / "home")}
    remote = tmp / "remote"

    def run(cmd, cwd):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, shell=True, check=True, capture_output=True)
        return time.perf_counter() - start

    a, b = tmp / "a", tmp / "b"
    run(f"git clone -q {REPO} {a}", tmp)
    # A reads this workspace's cache (so nothing is recomputed) and pushes to an empty remote.
    run(f"dvc cache dir --local {REPO / '.dvc' / 'cache'} && dvc remote add --local -d bench {remote} "
        "&& dvc checkout -q", a)
    push = run("dvc push", a)
    run(f"git clone -q {REPO} {b} && cd {b} && dvc remote add --local -d bench {remote}", tmp)
    pull = run("dvc pull", b)
    status = subprocess.run("dvc status", cwd=b, env=env, shell=True, capture_output=True, text=True).stdout
    return push, pull, size(remote), "up to date" in status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--dimension", type=int, default=1024)
    args = parser.parse_args()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if not (REPO / "data" / "prepared").is_dir():
        sys.exit("run `make run` first: the sample's artifacts are measured in this workspace")

    print_table("Sample (this workspace)", artifact_sizes(REPO, params["data"]["raw"], params["models"]))
    with tempfile.TemporaryDirectory() as tmp:
        rows, fit = scaled_artifacts(Path(tmp), args.articles, args.dimension, params)
    print_table(f"{args.articles:,} articles, {args.dimension}-d embeddings (built in this run)", rows)
    print("\nFit time of each probe at that size: " + ", ".join(f"{k} {v['fit_seconds']:.1f} s" for k, v in fit.items()))
    with tempfile.TemporaryDirectory() as tmp:
        push, pull, stored, clean = push_pull_times(Path(tmp))
    print(f"\nSample on a local remote: dvc push {push:.2f} s, dvc pull (fresh clone, empty cache) {pull:.2f} s, "
          f"{human(stored)} stored; `dvc status` after pull: {'up to date' if clean else 'NOT clean'}")


if __name__ == "__main__":
    main()
