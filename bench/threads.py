"""Benchmark: two torch processes side by side, with and without the thread setting (news_probes.threads).

Times the encoding of the sample's first texts with the MiniLM embedder (the embed stage's path, float32; in one
call, or `--mode single`: one call per text) in one process alone, then in two processes started together three
ways: each with every core (what two runs did before the setting), each with `NEWS_PROBES_THREADS=auto` while two
DVC queue workers are seen (two idle processes named like DVC's `dvc exp queue-worker <node>`, which is what auto
looks for), and each with half the cores by hand. Prints seconds per run and the slowdown against the run alone.

usage: python bench/threads.py [--texts 96] [--model all-MiniLM-L6-v2] [--mode batched|single]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = """
import sys, time
from news_probes import threads
threads.apply()         # before torch loads, as a stage's process does through the environment
import torch
from news_probes.embedders import embedder_config, load_embedder
from news_probes.io import read_jsonl
from news_probes.params import load_params
params = load_params('params.yaml')
config = embedder_config(params, sys.argv[1])
embedder = load_embedder(config, dtype='float32')
texts = [r.get('title', '') + '\\n' + r.get('content', '') for _, r in read_jsonl(params['data']['raw'])][:int(sys.argv[2])]
embedder.encode(texts[:4])
start = time.perf_counter()
if sys.argv[3] == 'batched':
    embedder.encode(texts)
else:                   # one article per call, as a service scores: many short parallel regions
    for text in texts:
        embedder.encode([text])
print(torch.get_num_threads(), time.perf_counter() - start)
"""


def run_together(n, env, args):
    """Start n workload processes at once; (threads, seconds) of each."""
    procs = [subprocess.Popen([sys.executable, "-c", WORKLOAD, args.model, str(args.texts), args.mode], cwd=REPO,
                              env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(n)]
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            sys.exit(f"workload failed (exit {p.returncode})")
        count, seconds = out.split()
        results.append((int(count), float(seconds)))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=96)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--mode", choices=["batched", "single"], default="batched",
                        help="one encode call for all texts (the embed stage), or one call per text (a service)")
    args = parser.parse_args()
    from news_probes.threads import available_cores
    cores = available_cores()
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NEWS_PROBES_THREADS")}
    print(f"{cores} cores available; CPU flags: "
          f"{'avx512_bf16' if 'avx512_bf16' in Path('/proc/cpuinfo').read_text() else 'no avx512_bf16'}")
    cases = [("alone, every core", 1, {"NEWS_PROBES_THREADS": str(cores)}),
             ("two at once, every core each (before)", 2, {"NEWS_PROBES_THREADS": str(cores)}),
             ("two at once, auto with 2 queue workers", 2, {"NEWS_PROBES_THREADS": "auto"}),
             ("two at once, half the cores each", 2, {"NEWS_PROBES_THREADS": str(max(1, cores // 2))})]
    rows, alone = [], None
    for label, n, extra in cases:
        workers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", "exp", "queue-worker",
                                     f"dvc-exp-bench-{i}@localhost"]) for i in range(2 if "queue" in label else 0)]
        try:
            results = run_together(n, {**base, **extra}, args)
        finally:
            for w in workers:
                w.kill()
        seconds = max(s for _, s in results)
        alone = alone or seconds
        rows.append({"case": label, "threads": [t for t, _ in results], "seconds": round(seconds, 2),
                     "slowdown": round(seconds / alone, 2)})
        print(f"{label:42s} threads {rows[-1]['threads']}  {seconds:7.2f} s  {seconds / alone:5.2f}x alone")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
