"""Benchmark: embedding throughput and precision, cost growth, probe training at scale, no-op repro.

Every figure is measured in this run, side by side:
  1. the embed stage's encoder (dtype from params, `auto` by default) vs a plain float32
     SentenceTransformer.encode of the same ELLIPSE essays, alternating rounds in one process; tokens/s; the
     machine's float32 and bfloat16 matmul peaks and the share of the bf16 peak the stage reaches;
  2. fidelity: per-text cosine between bf16 and fp32 embeddings of every essay, and the MAE of each probe
     trained on each (the pipeline's split of ELLIPSE); the best MAEs must agree within 0.002; each probe is
     also fitted with `--seeds` more seeds on both, giving its mean change and its fp32 range over the seeds.
     `--data data/sample/uplifting_sample.jsonl --skip throughput,growth,probes,noop` runs it on the sample;
  3. cost growth: wall time and peak memory of each stage at 1,000, 3,000 and 10,000 articles (the sample's
     articles repeated with distinct ids);
  4. probe training time at 10,000 × 1,024 (bench/storage.py's synthetic set: features that carry the labels);
  5. a no-op `dvc repro` of the default pipeline in this workspace (after `make run`).

usage: python bench/performance.py [--data ../shared/datasets/ellipse/data.jsonl] [--skip growth,probes,...]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "ellipse" / "data.jsonl"
MODEL = "all-MiniLM-L6-v2"
PARTS = ("throughput", "fidelity", "growth", "probes", "noop")


def matmul_gflops(dtype, n=2048, repeats=10):
    import torch
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def flops_per_token(config, seq_len):
    """Forward FLOPs per token of a BERT-style encoder: the dense layers plus attention scores and mixing."""
    h, ffn, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return layers * (2 * (4 * h * h + 2 * h * ffn) + 4 * seq_len * h)


def throughput(texts, entry, rounds):
    import torch
    from news_probes.embedders import load_embedder
    from news_probes.sources import resolve_source
    from sentence_transformers import SentenceTransformer
    stage = load_embedder(entry)
    plain = SentenceTransformer(resolve_source(entry["source"]), device="cpu")
    plain.max_seq_length = entry["max_tokens"]
    stage.encode(texts, show_progress=False)            # warm-up: kernels and allocations, for both sides
    tokens = stage.stats_["tokens"]
    plain.encode(texts[:64], batch_size=entry.get("batch_size", 32))
    rates = {"stage": [], "plain": []}
    for _ in range(rounds):
        for side, encode in (("stage", lambda: stage.encode(texts, show_progress=False)),
                             ("plain", lambda: plain.encode(texts, batch_size=entry.get("batch_size", 32)))):
            start = time.perf_counter()
            encode()
            rates[side].append(len(texts) / (time.perf_counter() - start))
    peaks = {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)}
    stage_rate, plain_rate = statistics.median(rates["stage"]), statistics.median(rates["plain"])
    mean_len = tokens / len(texts)
    achieved = stage_rate * mean_len * flops_per_token(stage.model[0].auto_model.config, mean_len) / 1e9
    print(f"\n## 1. Throughput ({len(texts)} ELLIPSE essays, {rounds} alternating rounds, medians)\n")
    print("| encoder | precision | texts/s | tokens/s |\n|---|---|---|---|")
    print(f"| embed stage | {stage.dtype} on {stage.device} | {stage_rate:.1f} | {stage_rate * mean_len:,.0f} |")
    print(f"| plain SentenceTransformer.encode | float32 on cpu | {plain_rate:.1f} | {plain_rate * mean_len:,.0f} |")
    print(f"\nstage / plain: {stage_rate / plain_rate:.2f}x (goal >= 2.5x); rounds: "
          + "; ".join(f"{k} " + ", ".join(f"{r:.1f}" for r in v) for k, v in rates.items()))
    print(f"matmul 2048^2 peaks measured now: float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 {peaks['bfloat16']:.0f} "
          f"GFLOP/s; the stage reaches about {achieved:.0f} GFLOP/s ({mean_len:.0f} tokens per text): "
          f"{achieved / peaks[stage.dtype]:.0%} of the {stage.dtype} peak")


def fidelity(data, entry, params, extra_seeds=2):
    """bf16 vs fp32 embeddings of the pipeline's split of `data`; probes trained on each, with several seeds.

    A probe's change under bf16 is compared with its own resolution: the same probe on the same fp32
    embeddings with other seeds (MLP initialisation and batch order, LightGBM's column sampling).
    """
    from news_probes.data import SPLITS, load_split, model_input
    from news_probes.embedders import load_embedder
    from news_probes.metrics import score
    from news_probes.stages.prepare import prepare
    from news_probes.stages.probe import fit_probes
    seeds = [params["seed"] + k for k in range(extra_seeds + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The pipeline's own raw file keeps its score range (the run then reproduces its split and metrics).
        own_data = Path(data).resolve() == (REPO / params["data"]["raw"]).resolve()
        p = params if own_data else {**params, "data": {**params["data"], "score_range": "auto"}}
        prepare(data, tmp / "prepared", tmp / "data.json", p)
        texts = {s: [model_input(r) for r in load_split(tmp / "prepared", s)] for s in SPLITS}
        all_texts = [t for s in SPLITS for t in texts[s]]
        truth = np.array([r["labels"] for r in load_split(tmp / "prepared", "test")])
        dims = json.loads((tmp / "prepared" / "schema.json").read_text())["dimensions"]
        matrices, maes = {}, {}
        for dtype in ("float32", "bfloat16"):
            start = time.perf_counter()
            matrix = load_embedder({**entry, "dtype": dtype}).encode(all_texts, show_progress=False)
            print(f"   embedded {len(all_texts)} texts in {dtype}: {time.perf_counter() - start:.1f} s")
            matrices[dtype] = matrix
            emb = tmp / dtype
            emb.mkdir()
            bounds = np.cumsum([0] + [len(texts[s]) for s in SPLITS])
            for i, s in enumerate(SPLITS):
                np.save(emb / f"{s}.npy", matrix[bounds[i]:bounds[i + 1]])
            for seed in seeds:
                out = tmp / "probes" / f"{dtype}-{seed}"
                fit_probes(MODEL, tmp / "prepared", emb, out, tmp / "fit.json", {**p, "seed": seed})
                for probe in params["probe"]:
                    with np.load(out / probe / "test_predictions.npz") as saved:
                        maes[dtype, seed, probe] = score(truth, saved["scores"], dims)["mae"]
    a, b = matrices["float32"], matrices["bfloat16"]
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"\n## 2. Fidelity, bfloat16 vs float32 ({len(all_texts)} texts of {data.name}, pipeline split, "
          f"test {len(truth)})\n")
    print(f"per-text cosine: min {cosine.min():.6f}, mean {cosine.mean():.6f}\n")
    first, others = seeds[0], ", ".join(map(str, seeds[1:])) or "none"
    print(f"| probe | MAE float32 | MAE bfloat16 | difference | seeds {first}, {others}: mean abs difference, "
          f"within 0.002 | float32 MAE range over the seeds |\n|---|---|---|---|---|---|")
    for probe in params["probe"]:
        f, h = maes["float32", first, probe], maes["bfloat16", first, probe]
        diffs = np.array([maes["bfloat16", s, probe] - maes["float32", s, probe] for s in seeds])
        fp32 = [maes["float32", s, probe] for s in seeds]
        print(f"| {probe} | {f:.4f} | {h:.4f} | {h - f:+.4f} | {np.abs(diffs).mean():.4f}, "
              f"{(np.abs(diffs) <= 0.002).sum()} of {len(seeds)} | {min(fp32):.4f} - {max(fp32):.4f} |")
    best = {d: min(maes[d, first, probe] for probe in params["probe"]) for d in ("float32", "bfloat16")}
    diff = best["bfloat16"] - best["float32"]
    print(f"\nbest MAE (seed {first}): float32 {best['float32']:.4f}, bfloat16 {best['bfloat16']:.4f}, difference "
          f"{diff:+.4f}: " + ("PASS (within 0.002)" if abs(diff) <= 0.002 else "FAIL (more than 0.002)"))


def stage_commands(model, raw):
    """The default pipeline's commands for one model, in order, read from dvc.yaml (python: this interpreter)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        looped = "foreach" in stage
        cmd = (stage["do"] if looped else stage)["cmd"].replace("${item}", model).replace("${data.raw}", raw)
        yield (f"{name}@{model}" if looped else name), cmd.replace("python ", f"{sys.executable} ", 1)


def growth(sizes, params):
    """Wall time and peak RSS of each stage (run as dvc.yaml runs it) at each dataset size."""
    from storage import repeat_sample
    results = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            subprocess.run(["cp", "-r", str(REPO / "stages"), str(REPO / "params.yaml"), str(work)], check=True)
            repeat_sample(work / "data" / "raw.jsonl", n, params)
            p = yaml.safe_load((work / "params.yaml").read_text())
            p["data"]["raw"] = "data/raw.jsonl"
            (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
            for stage, cmd in stage_commands(MODEL, "data/raw.jsonl"):
                timed = subprocess.run(["/usr/bin/time", "-f", "%e %M", "sh", "-c", cmd], cwd=work,
                                       capture_output=True, text=True)
                if timed.returncode != 0:
                    sys.exit(f"{stage} failed at {n} articles:\n{timed.stderr[-2000:]}")
                wall, kb = timed.stderr.strip().splitlines()[-1].split()
                results.setdefault(stage, {})[n] = (float(wall), int(kb) / 1024)
            print(f"   {n} articles done", flush=True)
    print("\n## 3. Cost growth (the sample's articles repeated with distinct ids; each stage as dvc.yaml runs it)\n")
    print("| stage | " + " | ".join(f"{n:,} articles: wall, peak RSS" for n in sizes) + " | wall ratio "
          f"{sizes[-1]:,} / {sizes[0]:,} |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for stage, by_size in results.items():
        cells = [f"{by_size[n][0]:.1f} s, {by_size[n][1]:.0f} MB" for n in sizes]
        print(f"| {stage} | " + " | ".join(cells) + f" | {by_size[sizes[-1]][0] / by_size[sizes[0]][0]:.1f} |")


def probes_at_scale(params, n, dimension):
    from storage import scaled_artifacts
    with tempfile.TemporaryDirectory() as tmp:
        _, fit = scaled_artifacts(Path(tmp), n, dimension, params)
    targets = {"ridge": 5, "mlp": 60, "lightgbm": 60}
    print(f"\n## 4. Probe training at {n:,} x {dimension} (synthetic features carrying the labels)\n")
    print("| probe | fit time | target | details |\n|---|---|---|---|")
    for probe, info in fit.items():
        details = ", ".join(f"{k} {v}" for k, v in info.items() if k != "fit_seconds")
        print(f"| {probe} | {info['fit_seconds']:.1f} s | < {targets[probe]} s | {details} |")


def noop_repro(repeats=3):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    status = subprocess.run(["dvc", "status", "-q"], cwd=REPO, env=env)
    if status.returncode != 0:
        print("\n## 5. No-op dvc repro: skipped, the workspace is not up to date (run `make run` first)")
        return
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run(["dvc", "repro"], cwd=REPO, env=env, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        assert "Running stage" not in out.stdout
    print(f"\n## 5. No-op dvc repro of the default pipeline: median {statistics.median(times):.2f} s over {repeats} "
          f"runs ({', '.join(f'{t:.2f}' for t in times)}; goal < 3 s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--throughput-texts", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1000,3000,10000")
    parser.add_argument("--seeds", type=int, default=2, help="fidelity: seeds after params' seed to fit each probe with")
    parser.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {', '.join(PARTS)}")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    entry = params["embedders"][MODEL]
    load = os.getloadavg()
    print(f"# bench/performance.py on {os.cpu_count()} CPUs, load average at start {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}\n$ python bench/performance.py {' '.join(sys.argv[1:])}")
    needs_data = {"throughput", "fidelity"} - skip
    if needs_data and not args.data.is_file():
        print(f"\n{args.data} is absent: skipping {', '.join(sorted(needs_data))}")
        skip |= needs_data
    if "throughput" not in skip:
        from news_probes.data import model_input
        from news_probes.io import read_jsonl
        from news_probes.records import article_fields
        texts = [model_input(article_fields(n, r, args.data)) for n, r in read_jsonl(args.data)]
        throughput(texts[:args.throughput_texts], entry, args.rounds)
    if "fidelity" not in skip:
        fidelity(args.data, entry, params, args.seeds)
    if "growth" not in skip:
        growth([int(s) for s in args.sizes.split(",")], params)
    if "probes" not in skip:
        probes_at_scale(params, 10_000, 1024)
    if "noop" not in skip:
        noop_repro()
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
