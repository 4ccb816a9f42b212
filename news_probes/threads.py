"""How many CPU threads torch and the BLAS/OpenMP libraries use in one process: a machine setting, not a parameter
of the results, so it lives in the environment rather than params.yaml.

    NEWS_PROBES_THREADS=4 dvc repro      # an integer >= 1, or `auto` (the default)

`auto` gives each process the cores it may run on divided by the DVC queue workers running on this machine
(`dvc queue start -j 2`: half each). Two processes that each use every core oversubscribe them, and OpenMP's
busy-waiting threads then slow both far more than 2x (bench/threads.py measures it). An explicit OMP_NUM_THREADS
is respected when NEWS_PROBES_THREADS is unset.

Applied by every stage and the `news-probes` command as they start (news_probes.io.run_main): to the libraries
already loaded (torch, and numpy's BLAS and OpenMP through threadpoolctl) and, through the environment variables
they read when they load, to those loaded later and to child processes.
"""
import os
import sys
from pathlib import Path

SETTING = "NEWS_PROBES_THREADS"
LIBRARY_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not Linux
        return os.cpu_count() or 1


def queue_workers(proc="/proc"):
    """The DVC queue workers running on this machine (`dvc exp queue-worker <node>` processes), 0 if none."""
    nodes = set()
    for cmdline in Path(proc).glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"queue-worker" in args:
            nodes.add(args[args.index(b"queue-worker") + 1] if args.index(b"queue-worker") + 1 < len(args) else b"")
    return len(nodes)


def threads(environ=None, cores=None, workers=None):
    """The thread count the setting asks for; ValueError naming the setting when it is malformed."""
    environ = os.environ if environ is None else environ
    value = environ.get(SETTING, "").strip() or "auto"
    if value == "auto" and environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        value = environ["OMP_NUM_THREADS"].strip()
    if value == "auto":
        cores = available_cores() if cores is None else cores
        workers = queue_workers() if workers is None else workers
        return max(1, cores // max(1, workers))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{SETTING} must be an integer >= 1 or auto, not {environ[SETTING]!r}")
    return int(value)


def apply():
    """Set this process's thread count from the setting; returns it (ValueError when the setting is malformed)."""
    count = threads()
    for name in LIBRARY_VARIABLES:
        os.environ[name] = str(count)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    if "numpy" in sys.modules:          # BLAS and OpenMP pools started at import: limited where they are
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=count)
    return count
