"""Benchmark: how far each quality metric moves between pipeline runs on different hardware signatures.

Give two or more checkouts (or copies) of this repository, each after a `dvc repro` under its own hardware:
for instance this workspace (bf16 on an AVX512-BF16 CPU), a clone run with `dtype: float32`, and a clone run
with `ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2`. For every pair it prints
each run's signature (metrics/summary.json `hardware`) and, per metric group and name as .ci/tolerances.yaml
keys them, the largest absolute change over all candidates and the baseline, with where it happened.

usage: python bench/tolerance.py RUN_DIR RUN_DIR [RUN_DIR ...] [--files metrics/probes ...]
"""
import argparse
import itertools
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".ci"))
from check_metrics import metric_group, metrics_files, numbers  # noqa: E402  (check-metrics' own reading)

FILES = ("metrics/summary.json", "metrics/baseline.json", "metrics/probes")


def metrics(run, files=FILES):
    """{file:key: value} of every quality metric of a run."""
    found = {}
    for f in metrics_files(Path(run) / target for target in files):
        for key, value in numbers(json.loads(f.read_text())):
            found[f"{f.relative_to(run).as_posix()}:{key}"] = value
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="two or more repository copies after a `dvc repro`")
    parser.add_argument("--files", nargs="+", default=FILES, help="metrics files or folders to compare")
    args = parser.parse_args()
    runs = args.runs
    if len(runs) < 2:
        parser.error("give at least two runs")
    values = {run: metrics(run, args.files) for run in runs}
    for run in runs:
        print(f"{run}: {json.dumps(json.loads((Path(run) / FILES[0]).read_text()).get('hardware'))}")
    for a, b in itertools.combinations(runs, 2):
        largest = {}
        for key in sorted(set(values[a]) & set(values[b])):
            change = abs(values[a][key] - values[b][key])
            group = metric_group(key.split(":")[1])
            if group[1] in ("n_test", "reference_mae"):
                continue
            if change >= largest.get(group, (-1, ""))[0]:
                largest[group] = (change, key)
        print(f"\n{a} vs {b}\n| group | metric | largest change | where |\n|---|---|---|---|")
        for (group, name), (change, key) in sorted(largest.items()):
            print(f"| {group} | {name} | {change:.4f} | {key} |")


if __name__ == "__main__":
    main()
