"""Print the distribution figures of the sample dataset as Markdown (the dataset card embeds this output).

usage: python data/sample/describe.py [data/sample/uplifting_sample.jsonl]
"""
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LANGUAGE_NAMES = {"en": "English", "fr": "French", "es": "Spanish", "pt": "Portuguese"}


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def counts(records, field, names=None):
    tally = Counter(r[field] for r in records)
    return table([field, "records", "share"],
                 [((names or {}).get(k, k), n, f"{n / len(records):.1%}") for k, n in tally.most_common()])


def describe(records):
    dims = records[0]["dimension_names"]
    labels = np.array([r["labels"] for r in records])
    words = np.array([len(r["content"].split()) for r in records])
    corr = np.corrcoef(labels.T)
    short = [d.split("_")[0] for d in dims]
    parts = [
        f"{len(records)} records; content length in words: min {words.min()}, median {int(np.median(words))}, "
        f"mean {words.mean():.0f}, max {words.max()}.",
        "### Records per language\n\n" + counts(records, "language", LANGUAGE_NAMES),
        "### Records per group\n\n" + counts(records, "group"),
        "### Records per topic\n\n" + counts(records, "topic"),
        "### Scores per dimension\n\n" + table(
            ["dimension", "mean", "std", "min", "max", "share <= 2", "share >= 7"],
            [(d, f"{c.mean():.2f}", f"{c.std():.2f}", f"{c.min():.1f}", f"{c.max():.1f}",
              f"{(c <= 2).mean():.1%}", f"{(c >= 7).mean():.1%}") for d, c in zip(dims, labels.T)]),
        "### Pearson correlation between dimensions\n\n" + table(
            [""] + short, [[s] + [f"{v:.2f}" for v in row] for s, row in zip(short, corr)]),
    ]
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(describe(load(sys.argv[1] if len(sys.argv) > 1 else HERE / "uplifting_sample.jsonl")), end="")
