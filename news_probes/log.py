"""Log records and progress bars of every command, under one level the user sets.

The level comes from a command's `--log-level`, else the NEWS_PROBES_LOG_LEVEL environment variable (which also
reaches the stages `dvc repro` runs), else INFO. Records go to stderr with the time and level; progress bars (tqdm,
on stderr, with rate and ETA) show at INFO and below, so WARNING leaves a run's warnings and errors only. The test
suite sets WARNING."""
import logging
import os
import sys

from tqdm import tqdm

LEVEL_VARIABLE = "NEWS_PROBES_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
logger = logging.getLogger("news_probes")


def parse_level(value, source):
    """The logging level named by `value` (case-insensitive; None or empty: INFO); ValueError naming `source`."""
    name = (value or "INFO").strip().upper()
    if name not in LEVELS:
        raise ValueError(f"{source}: {value!r} is not a log level (one of {', '.join(LEVELS)})")
    return getattr(logging, name)


class BarSafeHandler(logging.Handler):
    """Writes records to stderr through tqdm, which clears an active bar first and redraws it after, so that a
    record never lands in the middle of a bar."""

    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:       # logging's own convention: a failing handler reports and goes on
            self.handleError(record)


def configure(level=None):
    """Send the package's records to stderr at `level` (a name), else the environment's level, else INFO.
    Calling it again changes the level without adding a second handler."""
    source = "--log-level" if level is not None else LEVEL_VARIABLE
    number = parse_level(level if level is not None else os.environ.get(LEVEL_VARIABLE), source)
    if not any(isinstance(h, BarSafeHandler) for h in logger.handlers):
        handler = BarSafeHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False        # a host application's root handlers would print every record twice
    logger.setLevel(number)
    if number > logging.INFO:
        quiet_library_bars()
    return number


def quiet_library_bars():
    """Turn off the bars the libraries underneath draw themselves (transformers' "Loading weights", the hub's),
    so that a level above INFO means no bar at all. The hub's switch, set before transformers is imported, is
    the one transformers starts from; transformers' own covers the case where it was imported first."""
    from huggingface_hub.utils import disable_progress_bars
    disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils.logging import disable_progress_bar
        disable_progress_bar()


def progress(iterable=None, enabled=True, **kwargs):
    """A tqdm bar on stderr, shown when `enabled` and the package logs at INFO or below. Off a terminal (a CI
    log) it redraws at most every 30 s (tqdm's own monitor included), so that the log holds a few lines, not
    thousands."""
    shown = enabled and logger.isEnabledFor(logging.INFO)
    interactive = sys.stderr.isatty()
    interval = {"mininterval": 0.1, "maxinterval": 10} if interactive else {"mininterval": 30, "maxinterval": 30}
    return tqdm(iterable, disable=not shown, file=sys.stderr, dynamic_ncols=interactive, **interval, **kwargs)
