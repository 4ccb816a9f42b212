"""Compare metrics files in the workspace with their committed version; exit 1 when a number moved.

usage: python .ci/check_metrics.py --against HEAD metrics/summary.json metrics/probes [--tolerance 1e-4]
Only quality metrics belong here: timing files change on every run by nature.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path


def numbers(obj, prefix=""):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from numbers(value, f"{prefix}{key}.")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix.rstrip("."), float(obj)


def committed(rev, path):
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", default="HEAD")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    files = [f for p in map(Path, args.paths) for f in (sorted(p.rglob("*.json")) if p.is_dir() else [p])]
    problems = []
    for f in files:
        old = committed(args.against, f.as_posix())
        if old is None:
            problems.append(f"{f}: not committed at {args.against}")
            continue
        new, old = dict(numbers(json.loads(f.read_text()))), dict(numbers(old))
        for key in sorted(set(new) | set(old)):
            if key not in new or key not in old:
                problems.append(f"{f}: {key} only in {'workspace' if key in new else args.against}")
            elif abs(new[key] - old[key]) > args.tolerance:
                problems.append(f"{f}: {key} committed {old[key]:.6f}, produced {new[key]:.6f}")
    print(f"checked {len(files)} metrics files against {args.against}: "
          + ("stale or changed numbers:\n  " + "\n  ".join(problems) if problems else "all numbers match"))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
