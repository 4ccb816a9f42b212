"""Benchmark: head vs head+tail vs chunks for one embedder, on the sample or another JSONL dataset.

Prepares the dataset with params.yaml's split settings (score range auto for a dataset other than the sample),
embeds it three times (only `truncation` differs) and fits the selected probes on each, then prints validation
and test MAE per setting and probe, the windows per text and the embedding time. Everything runs in a temporary
directory; the repository is not touched.

usage: python bench/truncation.py [--data data/sample/uplifting_sample.jsonl] [--model all-MiniLM-L6-v2]
                                  [--probe ridge mlp]
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

from news_probes.artifacts import load_predictions
from news_probes.data import load_split
from news_probes.params import load_params
from news_probes.stages.embed import embed
from news_probes.stages.prepare import prepare
from news_probes.stages.probe import fit_probes
from news_probes.tokens import EMBED_TRUNCATION

REPO = Path(__file__).resolve().parents[1]


def mae(folder, prepared, split):
    rows = load_split(prepared, split)
    truth = np.array([r["labels"] for r in rows])
    return float(np.abs(load_predictions(folder, split, [r["id"] for r in rows])["scores"] - truth).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data/sample/uplifting_sample.jsonl")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--probe", nargs="+", default=["ridge", "mlp"])
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"skipped: {args.data} not found")
        return
    params = load_params(REPO / "params.yaml")
    params["probe"] = args.probe
    if args.data.resolve() != (REPO / params["data"]["raw"]).resolve():
        params["data"]["score_range"] = "auto"
    tmp = Path(tempfile.mkdtemp(prefix="bench-truncation-"))
    prepare(args.data, tmp / "prepared", tmp / "data.json", params)
    print(f"{args.data.name}: {args.model}, probes {', '.join(args.probe)}")
    print(f"{'truncation':10s} {'probe':9s} {'val MAE':>8s} {'test MAE':>9s} {'windows/text':>13s} {'embed s':>8s}")
    for setting in EMBED_TRUNCATION:
        params["embedders"][args.model] = {**params["embedders"][args.model], "truncation": setting}
        out = tmp / setting
        _, meta = embed(args.model, tmp / "prepared", out / "emb", out / "meta.json", params)
        fit_probes(args.model, tmp / "prepared", out / "emb", out / "probes", out / "fit.json", params)
        windows = meta["windows_per_text"]
        per_text = sum(int(k) * v for k, v in windows.items()) / sum(windows.values())
        for probe in args.probe:
            folder = out / "probes" / probe
            print(f"{setting:10s} {probe:9s} {mae(folder, tmp / 'prepared', 'val'):8.4f} "
                  f"{mae(folder, tmp / 'prepared', 'test'):9.4f} {per_text:13.2f} {meta['seconds']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
