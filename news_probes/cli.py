"""The `news-probes` command.

    news-probes score models/probes/all-MiniLM-L6-v2/ridge --input new.jsonl --output scored.jsonl
    news-probes score models/adapters/smollm2-cpu < new.jsonl > scored.jsonl
    news-probes score models/routed -i new.jsonl -o scored.jsonl     # the hybrid: probe, then adapter if routed

`score` reads articles in either shape prepare accepts (labels are not needed) and writes one line per article,
{"id", "scores": {dimension: score}} (the hybrid adds "scored_by": probe or adapter); `-` (the default) is stdin /
stdout. Messages and the progress bar go to stderr; `--log-level WARNING` (or NEWS_PROBES_LOG_LEVEL=WARNING) keeps
warnings and errors only.

    news-probes verify            # re-hash the cache objects dvc.lock points to; remove what is corrupted
"""
import argparse
import sys
import textwrap
import time

from news_probes import verify as verification
from news_probes.hardware import MIXED_DTYPES
from news_probes.io import run_main
from news_probes.log import LEVEL_VARIABLE, LEVELS, logger


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
    logger.info(f"scored {n} articles with {scorer.describe()} in {seconds:.1f} s ({1000 * seconds / n:.1f} ms "
                f"per article; loading took {loaded - start:.1f} s) -> "
                f"{'stdout' if args.output == '-' else args.output}")


def verify(args):
    """Exit 0 when every cached output hashes right, 1 when something was corrupted (and repaired)."""
    report = verification.verify(args.repo, dry_run=args.dry_run)
    for line in report.lines():
        logger.warning(line)
    (logger.warning if report.findings else logger.info)(
        f"verified {report.checked} files ({report.missing} objects not in the local cache): "
        f"{len(report.findings)} corrupted")
    if report.findings:
        logger.warning("run `news-probes verify` without --dry-run, then `dvc repro`" if args.dry_run else
                       "run `dvc repro` (or `dvc pull`) to rebuild what was removed")
        sys.exit(1)


def parser():
    root = argparse.ArgumentParser(prog="news-probes", description="Frozen-embedding probes and the LoRA baseline: "
                                   "score articles with what the pipeline trained.")
    root.add_argument("--log-level", type=str.upper, choices=LEVELS, default=None,
                      help=f"messages and progress bars shown on stderr (default: ${LEVEL_VARIABLE}, else INFO; "
                           f"WARNING keeps warnings and errors only)")
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
    checking = commands.add_parser(
        "verify", formatter_class=argparse.RawDescriptionHelpFormatter, help="re-hash the DVC cache objects and outputs dvc.lock points to; remove corrupted ones",
        description=verification.__doc__)
    checking.add_argument("--repo", default=".", help="the repository root (default: .)")
    checking.add_argument("--dry-run", action="store_true", help="report only: remove nothing")
    checking.set_defaults(run=verify)
    return root


def main(argv=None):
    args = parser().parse_args(argv)
    run_main(lambda: args.run(args), args.log_level)


if __name__ == "__main__":
    main()
