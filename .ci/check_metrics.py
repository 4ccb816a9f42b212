"""Compare metrics files in the workspace with their committed version; exit 1 when a number moved too far.

usage: python .ci/check_metrics.py --against HEAD --tolerances .ci/tolerances.yaml \
           metrics/summary.json metrics/probes metrics/baseline.json metrics/data.json

The hardware signature of a run (device, CPU model, instruction set, precision of each embedder and of the
adapter) is `hardware` in metrics/summary.json. When the workspace's signature equals the committed one,
every number must be equal. When it differs, each quality metric may move by its tolerance in the tolerances file, measured
between precisions and instruction sets; numbers without a tolerance (counts, data statistics) must be equal.
Only quality metrics belong here: timing files change on every run by nature; where a metrics file holds times
beside quality figures (the route stage's), the keys listed under `not_compared` are skipped.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml


def numbers(obj, prefix=""):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from numbers(value, f"{prefix}{key}.")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix.rstrip("."), float(obj)


def committed(rev, path):
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def metrics_files(paths):
    """The JSON files named by `paths`: files as given, folders searched recursively, in sorted order."""
    return [f for p in map(Path, paths) for f in (sorted(p.rglob("*.json")) if p.is_dir() else [p])]


# Filter figures, under `filter` in a metrics file and flattened into the summary's rows (named as below).
FILTER_NAMES = {"weighted_mae", "precision", "recall", "f1", "false_negative_rate", "ndcg_at_10pct", "confusion",
                "tier_recall", "high_tier_recall", "bias"}


def metric_group(key):
    """(group, name) of a flattened metrics key, as .ci/tolerances.yaml keys tolerances: ('per_dimension', 'mae')
    for per_dimension.<dim>.mae; ('overall', 'mae') for mae, val.mae, candidates.<model>.<probe>.mae or its val_mae;
    ('seeds', 'sd') for seeds.sd or a summary row's seed_sd; ('filter', 'recall') for filter.recall or a row's
    recall; ('filter', 'confusion') for every cell of the tier confusion matrix, ('filter', 'bias') for each
    dimension's bias, ('filter', 'tier_recall') for each tier's recall (a row's high_tier_recall too)."""
    parts = key.split(".")
    if parts[0] == "routing":           # the route stage's chosen point: its own group
        return "routing", parts[-1]
    name = next((p for p in ("confusion", "tier_recall", "bias") if p in parts), parts[-1])
    name = {"high_tier_recall": "tier_recall", "val_mae": "mae"}.get(name, name)
    if "per_dimension" in parts:
        return "per_dimension", name
    if "seeds" in parts or name == "seed_sd":
        return "seeds", "sd" if name == "seed_sd" else name
    return ("filter" if "filter" in parts or name in FILTER_NAMES else "overall"), name


def tolerance(key, tolerances):
    """A metric's tolerance: by its name (mae, rmse, ...) within its group (per_dimension or overall); 0 if none."""
    group, name = metric_group(key)
    return float((tolerances.get(group) or {}).get(name, 0.0))


def describe(signature):
    return json.dumps(signature, sort_keys=True) if signature else "none recorded"


def timing(key, not_compared):
    """Whether a flattened key names a time or a ratio of times (a part of it is listed in `not_compared`)."""
    return any(part in not_compared for part in key.split("."))


def compare(files, against, signature_file, tolerances, not_compared=()):
    """(lines describing the comparison, problems): every number of `files` against its committed value."""
    here = json.loads(Path(signature_file).read_text()).get("hardware")
    there = (committed(against, Path(signature_file).as_posix()) or {}).get("hardware")
    same = here is not None and here == there
    lines = [f"hardware of this run:       {describe(here)}", f"hardware of {against} (committed): {describe(there)}",
             "same hardware: numbers must be equal" if same else
             "different hardware: numbers may move within the measured tolerances"]
    problems = []
    for f in files:
        old = committed(against, f.as_posix())
        if old is None:
            problems.append(f"{f}: not committed at {against}")
            continue
        new, old = dict(numbers(json.loads(f.read_text()))), dict(numbers(old))
        for key in sorted(set(new) | set(old)):
            if key not in new or key not in old:
                problems.append(f"{f}: {key} only in {'workspace' if key in new else against}")
                continue
            if timing(key, not_compared):
                continue
            allowed = 0.0 if same else tolerance(key, tolerances)
            if abs(new[key] - old[key]) > allowed:
                problems.append(f"{f}: {key} committed {old[key]:.6f}, produced {new[key]:.6f} "
                                f"(change {new[key] - old[key]:+.6f}, tolerance {allowed:g})")
    return lines, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD")
    parser.add_argument("--tolerances", default=str(Path(__file__).with_name("tolerances.yaml")))
    parser.add_argument("--signature", default="metrics/summary.json", help="the metrics file holding `hardware`")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    files = metrics_files(args.paths)
    config = yaml.safe_load(Path(args.tolerances).read_text())
    lines, problems = compare(files, args.against, args.signature, config["tolerances"],
                              config.get("not_compared", []))
    print("\n".join(lines))
    print(f"checked {len(files)} metrics files against {args.against}: "
          + ("numbers outside their tolerance:\n  " + "\n  ".join(problems) if problems else "all numbers match"))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
