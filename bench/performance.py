"""Benchmark: encoder backends and precisions, their fidelity, cost growth, probe training at scale, no-op
repro, the adapter's training step and scoring.

Every figure is measured in this run, side by side:
  1. the embed stage's encoder in every variant this machine can run (torch float32; torch bfloat16 where
     native; ONNX Runtime float32 and int8; OpenVINO float32, and bfloat16 where native) vs a plain float32 SentenceTransformer.encode of the same ELLIPSE
     essays, alternating rounds in one process; tokens/s; the matmul peaks and the share each variant reaches;
  2. fidelity of each variant against torch float32 (the pipeline's split of `--data`): per-text cosine, the
     ridge probe's MAE change (must be within 0.002) and, for the seeded probes, the change of the mean of
     their single seeds' MAEs against the float32 seeds' standard deviation (must be within one sd).
     `--data data/sample/uplifting_sample.jsonl --skip throughput,growth,probes,noop,adapter` runs it on the sample;
  3. cost growth: wall time and peak memory of each stage at 1,000, 3,000 and 10,000 articles (the sample's
     articles repeated with distinct ids);
  4. probe training time at 10,000 × 1,024 (bench/storage.py's synthetic set: features that carry the labels);
  5. a no-op `dvc repro` of the default pipeline in this workspace (after `make run`);
  6. the adapter: seconds per training step of the CPU profile at 8 x 256 tokens, with its LoRA dropout and
     without; scoring latency (single and batched) of the committed adapter, unmerged and merged.

usage: python bench/performance.py [--data ../shared/datasets/ellipse/data.jsonl] [--skip growth,probes,...]
"""
import argparse
import importlib.util
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
PARTS = ("throughput", "fidelity", "growth", "probes", "noop", "adapter")


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


def variants():
    """(label, registry overrides) of every way the embed stage can run MiniLM here: torch float32; torch bfloat16
    where this CPU computes it natively (emulated bf16 is hundreds of times slower: not a candidate); ONNX Runtime
    fp32 and int8 where onnxruntime is installed; OpenVINO fp32, and bf16 where native, where openvino is."""
    from news_probes.hardware import native
    out = [("torch float32", {"backend": "torch", "dtype": "float32"})]
    if native("bfloat16", "cpu"):
        out.append(("torch bfloat16", {"backend": "torch", "dtype": "bfloat16"}))
    if importlib.util.find_spec("onnxruntime"):
        out += [("onnx float32", {"backend": "onnx", "dtype": "float32"}),
                ("onnx-int8", {"backend": "onnx-int8", "dtype": "float32"})]
    if importlib.util.find_spec("openvino"):
        out.append(("openvino float32", {"backend": "openvino", "dtype": "float32"}))
        if native("bfloat16", "cpu"):
            out.append(("openvino bfloat16", {"backend": "openvino", "dtype": "bfloat16"}))
    return out


def auto_choice(entry):
    from news_probes.hardware import choose_backend
    backend, dtype = choose_backend(entry.get("backend", "auto"), "cpu", entry.get("dtype", "auto"))
    return "onnx-int8" if backend == "onnx-int8" else f"{backend} {dtype}"


def throughput(texts, entry, rounds):
    """texts/s of the embed stage's encoder in each variant and of a plain float32 SentenceTransformer.encode of
    the same texts, alternating rounds in one process."""
    import torch
    from news_probes.embedders import load_embedder
    from news_probes.sources import resolve_source
    from sentence_transformers import SentenceTransformer
    encoders = {label: load_embedder({**entry, **overrides}) for label, overrides in variants()}
    plain = SentenceTransformer(resolve_source(entry["source"]), device="cpu")
    plain.max_seq_length = entry["max_tokens"]
    batch = entry.get("batch_size", 32)
    calls = {label: (lambda e=e: e.encode(texts, show_progress=False)) for label, e in encoders.items()}
    calls["plain SentenceTransformer.encode, float32"] = lambda: plain.encode(texts, batch_size=batch)
    for call in calls.values():                          # warm-up: kernels and allocations, for every side
        call()
    rates = {label: [] for label in calls}
    for _ in range(rounds):
        for label, call in calls.items():
            start = time.perf_counter()
            call()
            rates[label].append(len(texts) / (time.perf_counter() - start))
    peaks = {"float32": matmul_gflops(torch.float32)}
    if "torch bfloat16" in encoders:
        peaks["bfloat16"] = matmul_gflops(torch.bfloat16)
    first = next(iter(encoders.values()))
    config = first.model[0].auto_model.config
    # Tokens per text: the stage encodes every window of a text (chunks), plain encode the first max_tokens only;
    # so rates are compared per token, and FLOPs counted at each side's own window length.
    stage_len = first.stats_["tokens"] / len(texts)
    plain_len = float(np.mean([min(len(ids), entry["max_tokens"]) for ids in plain.tokenizer(texts)["input_ids"]]))
    windows = stage_len / max(1, sum(first.stats_["windows_per_text"].get(k, 0) * int(k) for k in
                                     first.stats_["windows_per_text"]) / len(texts))
    plain_label = "plain SentenceTransformer.encode, float32"
    lengths = {label: (plain_len, plain_len) if label == plain_label else (stage_len, windows) for label in rates}
    plain_tokens = statistics.median(rates[plain_label]) * plain_len
    print(f"\n## 1. Throughput ({len(texts)} texts; {stage_len:.0f} tokens a text in the stage's windows, "
          f"{plain_len:.0f} in plain encode's cut; {rounds} alternating rounds, medians; the embed stage's `auto` "
          f"here: {auto_choice(entry)})\n")
    print("| encoder | texts/s | tokens/s | x plain fp32 encode (tokens/s) | GFLOP/s | share of the peak |\n"
          "|---|---|---|---|---|---|")
    for label, runs in rates.items():
        rate = statistics.median(runs)
        per_text, window = lengths[label]
        gflops = rate * per_text * flops_per_token(config, window) / 1e9
        peak = "bfloat16" if "bfloat16" in label else "float32"
        share = f"{gflops / peaks[peak]:.0%} of the {peak} matmul peak"
        if "int8" in label:
            share += " (int8 peak not measured)"
        print(f"| {label} | {rate:.1f} | {rate * per_text:,.0f} | {rate * per_text / plain_tokens:.2f}x | "
              f"{gflops:.0f} | {share} |")
    print("\nrounds: " + "; ".join(f"{k} " + ", ".join(f"{r:.1f}" for r in v) for k, v in rates.items()))
    print("matmul 2048^2 peaks measured now: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))


def probe_maes(truth, directory, probes, dims):
    """Per probe: the MAE of its seed-averaged predictions and the spread of its single seeds (metrics.seed_spread,
    as the evaluate stage reports it)."""
    from news_probes.metrics import score, seed_spread
    out = {}
    for probe in probes:
        with np.load(directory / probe / "test_predictions.npz") as saved:
            seeds = saved["seed_scores"] if "seed_scores" in saved.files else saved["scores"][None]
            out[probe] = (score(truth, saved["scores"], dims)["mae"], seed_spread(truth, seeds))
    return out


def fidelity(data, entry, params):
    """Every variant against torch float32 on the pipeline's split of `data`: per-text cosine of the
    embeddings, and the probes trained on each (with params' seeds). Pass: the deterministic ridge's MAE within
    0.002; for the seeded probes, the mean of their single seeds' MAEs within one float32 seed sd."""
    from news_probes.data import SPLITS, load_split, model_input
    from news_probes.embedders import load_embedder
    from news_probes.stages.prepare import prepare
    from news_probes.stages.probe import fit_probes
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
        for k, (label, overrides) in enumerate(variants()):
            start = time.perf_counter()
            matrices[label] = load_embedder({**entry, **overrides}).encode(all_texts, show_progress=False)
            print(f"   {label}: embedded {len(all_texts)} texts in {time.perf_counter() - start:.1f} s", flush=True)
            emb = tmp / f"embeddings{k}"
            emb.mkdir()
            bounds = np.cumsum([0] + [len(texts[s]) for s in SPLITS])
            for i, s in enumerate(SPLITS):
                np.save(emb / f"{s}.npy", matrices[label][bounds[i]:bounds[i + 1]])
            fit_probes(MODEL, tmp / "prepared", emb, tmp / f"probes{k}", tmp / "fit.json", p)
            maes[label] = probe_maes(truth, tmp / f"probes{k}", params["probe"], dims)
    reference = "torch float32"
    ref = maes[reference]
    print(f"\n## 2. Fidelity against {reference} ({len(all_texts)} texts of {data.name}, pipeline split, test "
          f"{len(truth)}; seeds as params.yaml: " + ", ".join(f"{q} {ref[q][1]['n']}" for q in params["probe"]) + ")\n")
    print(f"{reference}: " + ", ".join(f"{q} MAE {ref[q][0]:.4f} (single seeds {ref[q][1]['mean']:.4f} +- "
                                       f"{ref[q][1]['sd']:.4f})"
                                       for q in params["probe"]) + "\n")
    print("| variant | cosine min | cosine mean | " + " | ".join(
        f"{q}: change, bound" for q in params["probe"]) + " | passes |\n|---|---|---|" + "---|" * len(params["probe"]) + "---|")
    for label, found in maes.items():
        if label == reference:
            continue
        a, b = matrices[reference], matrices[label]
        cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        cells, passes = [], True
        for q in params["probe"]:
            if ref[q][1]["n"] > 1:
                change, bound = found[q][1]["mean"] - ref[q][1]["mean"], ref[q][1]["sd"]
            else:
                change, bound = found[q][0] - ref[q][0], 0.002
            passes &= bool(abs(change) <= bound)
            cells.append(f"{change:+.4f}, {bound:.4f}")
        print(f"| {label} | {cosine.min():.4f} | {cosine.mean():.4f} | " + " | ".join(cells) +
              f" | {'yes' if passes else 'no'} |")


def adapter(params, steps=3):
    """The fine-tuned baseline: training step time of the CPU profile at 8 x 256 tokens with its LoRA dropout and
    without, and scoring latency of the committed adapter unmerged vs merged."""
    import torch
    from news_probes.data import load_split, model_input
    from news_probes.lora import LoRARegressor
    from news_probes.timing import latency_ms
    profile = dict(params["finetune"]["profiles"]["smollm2-cpu"])
    rows = load_split(REPO / "data" / "prepared", "train")
    texts, y = [model_input(r) for r in rows], np.array([r["labels"] for r in rows], np.float64)
    from news_probes.hardware import choose_dtype
    dtype = choose_dtype(profile.get("dtype", "auto"), "cpu")
    peak = matmul_gflops(getattr(torch, dtype))
    print(f"\n## 6. Adapter (the CPU profile on the sample; matmul peak now: {dtype} {peak:.0f} GFLOP/s)\n")
    print(f"Training, 8 x 256 tokens a step ({steps} steps after one warm-up; FLOPs taken as 4 x parameters outside "
          f"the embeddings x tokens: forward, and backward to the activations only, the base being frozen)\n")
    print("| LoRA dropout | precision | s/step | tokens/s | GFLOP/s | share of the peak |\n|---|---|---|---|---|---|")
    study = params["finetune"]["profiles"]["qwen2_5-1_5b-gpu"]["dropout"]        # the study's LoRA dropout
    for dropout in sorted({study, profile["dropout"]}, reverse=True):
        settings = {**profile, "dropout": dropout, "max_tokens": 256, "batch_size": 8, "warmup_steps": 0,
                    "epochs": 1, "eval_steps": 0}
        seconds = []
        regressor = LoRARegressor(**settings, seed=params["seed"])
        regressor.fit(texts[:8 * (steps + 1)], y[:8 * (steps + 1)], texts[:2], y[:2],
                      on_step=lambda record: seconds.append(record["seconds"]))
        per_step = float(np.mean(np.diff(seconds)))
        tokens = regressor.train_tokens_ / regressor.steps_
        embeddings = regressor.model_.get_input_embeddings().weight.numel()
        parameters = sum(p.numel() for p in regressor.model_.parameters()) - embeddings
        gflops = 4 * parameters * tokens / per_step / 1e9
        print(f"| {dropout} | {regressor.dtype_} | {per_step:.2f} | {tokens / per_step:.0f} | {gflops:.0f} | "
              f"{gflops / peak:.0%} of {dtype} |", flush=True)
    folder = REPO / "models" / "adapters" / "smollm2-cpu"
    if not (folder / "regressor.json").is_file():
        print("\nScoring: skipped, no committed adapter in models/adapters/smollm2-cpu (run `make run` first)")
        return
    regressor = LoRARegressor.load(folder)
    rows = load_split(REPO / "data" / "prepared", "test")
    test, truth = [model_input(r) for r in rows], np.array([r["labels"] for r in rows])
    unmerged = regressor.predict(test, merged=False)     # first: in bf16, unmerging does not restore the base
    merged = regressor.predict(test, merged=True)        # exactly (the product is rounded in and out)
    default = "merged" if regressor.merges_for_scoring else "unmerged"
    print(f"\nScoring the committed adapter ({regressor.dtype_}; single: 16 test articles one at a time; batched: "
          f"all {len(test)}, in batches of {regressor.batch_size}, the faster of 2 runs; largest score difference "
          f"merged vs unmerged {np.abs(merged - unmerged).max():.2e})\n")
    print("| adapter | test MAE | ms/article single | ms/article batched |\n|---|---|---|---|")
    for label, merge, scores in (("unmerged", False, unmerged), ("merged", True, merged)):
        single = latency_ms(lambda batch: regressor.predict(batch, merged=merge), test[:16], repeats=16)["single"]
        batched = []
        for _ in range(2):
            start = time.perf_counter()
            regressor.predict(test, merged=merge)
            batched.append(1000 * (time.perf_counter() - start) / len(test))
        mark = " (the default here)" if label == default else ""
        print(f"| {label}{mark} | {np.abs(scores - truth).mean():.4f} | {single:.1f} | {min(batched):.1f} |",
              flush=True)


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
    parser.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {', '.join(PARTS)}")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    from news_probes import threads
    threads.apply()                         # the thread count every stage runs with (NEWS_PROBES_THREADS)
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
        fidelity(args.data, entry, params)
    if "growth" not in skip:
        growth([int(s) for s in args.sizes.split(",")], params)
    if "probes" not in skip:
        probes_at_scale(params, 10_000, 1024)
    if "noop" not in skip:
        noop_repro()
    if "adapter" not in skip:
        adapter(params)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
