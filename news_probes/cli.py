"""The `news-probes` command.

    news-probes score models/probes/all-MiniLM-L6-v2/ridge --input new.jsonl --output scored.jsonl
    news-probes score models/adapters/smollm2-cpu < new.jsonl > scored.jsonl
    news-probes score models/routed -i new.jsonl -o scored.jsonl     # the hybrid: probe, then adapter if routed

`score` reads articles in either shape prepare accepts (labels are not needed) and writes one line per article,
{"id", "scores": {dimension: score}} (the hybrid adds "scored_by": probe or adapter); `-` (the default) is stdin /
stdout. Messages go to stderr.
"""
import argparse
import sys
import textwrap
import time

from news_probes.hardware import MIXED_DTYPES
from news_probes.io import run_main


def positive(text):
    """--batch-size: an integer >= 1 (argparse then exits 2 with one line naming the option)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, not {text!r}")
    return value


def score(args):
    from pathlib import Path
    from news_probes.io import InputError
    from news_probes.scoring import load_scorer, score_file
    if args.output != "-" and Path(args.output).is_dir():
        raise InputError(args.output, "is a directory: --output names the file to write (or - for stdout)")
    start = time.perf_counter()
    scorer = load_scorer(args.folder, args.dtype)
    loaded = time.perf_counter()
    n = score_file(scorer, args.input, args.output, args.batch_size, show_progress=args.output != "-")
    seconds = time.perf_counter() - loaded
    print(f"scored {n} articles with {scorer.describe()} in {seconds:.1f} s ({1000 * seconds / n:.1f} ms per "
          f"article; loading took {loaded - start:.1f} s) -> {'stdout' if args.output == '-' else args.output}",
          file=sys.stderr)


def parser():
    root = argparse.ArgumentParser(prog="news-probes", description="Frozen-embedding probes and the LoRA baseline: "
                                   "score articles with what the pipeline trained.")
    commands = root.add_subparsers(dest="command", required=True)
    scoring = commands.add_parser("score", help="score articles (JSONL in, JSONL out)",
                                  description=textwrap.dedent(__doc__.split("\n\n", 1)[1]),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    scoring.add_argument("folder", help="a probe folder (models/probes/<model>/<probe>), an adapter folder "
                                        "(models/adapters/<profile>), the stacked candidate (models/stacked) or "
                                        "the hybrid of the route stage (models/routed)")
    scoring.add_argument("-i", "--input", default="-", help="JSONL of articles (id, title, content or text); "
                                                             "- for stdin (default)")
    scoring.add_argument("-o", "--output", default="-", help="JSONL of {id, scores}; - for stdout (default)")
    scoring.add_argument("--batch-size", type=positive, default=256, help="articles scored per call")
    scoring.add_argument("--dtype", default="auto", choices=MIXED_DTYPES,
                         help="precision to score in (auto: bfloat16 only where this machine computes it natively)")
    scoring.set_defaults(run=score)
    return root


def main(argv=None):
    args = parser().parse_args(argv)
    run_main(lambda: args.run(args))


if __name__ == "__main__":
    main()
