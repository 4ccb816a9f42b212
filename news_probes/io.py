"""Files in and out: JSON and JSONL reading with errors that name the line, atomic writes, whole output folders
replaced only when complete, and the input-error convention of every command."""
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path


class InputError(Exception):
    """Bad input the user must fix. Printed as `error: FILE:LINE: FIELD: message`, exit status 2."""

    def __init__(self, path, message, line=None, field=None):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")


def run_main(main, log_level=None):
    """Run a stage's or the command's main() with the log level (news_probes.log: `log_level`, else the
    environment's) and the thread setting (news_probes.threads) applied; turn InputError into a one-line message
    and a non-zero exit. That line is printed whatever the log level: it is the command's answer."""
    from news_probes import log, threads
    try:
        try:
            log.configure(log_level)
            threads.apply()
        except ValueError as err:
            raise InputError("environment", str(err)) from None      # argparse has checked --log-level
        main()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def read_jsonl(path):
    """Yield (line_number, object) for every non-blank line; malformed JSON names its line, bytes that are not
    UTF-8 their line and byte offset. `-` reads stdin."""
    with (contextlib.nullcontext(sys.stdin.buffer) if str(path) == "-" else open(path, "rb")) as f:
        offset = 0
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(source_name(path), f"not UTF-8: byte 0x{raw[err.start]:02x} at byte offset "
                                 f"{offset + err.start} of the file (column {err.start + 1} of the line)",
                                 line=number) from None
            offset += len(raw)
            if number == 1:
                line = line.removeprefix("\ufeff")       # a byte-order mark, as some editors write
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(source_name(path), f"malformed JSON at column {err.colno}: "
                                 f"{err.msg.removesuffix(' at')}", line=number) from None
            if not isinstance(obj, dict):
                raise InputError(source_name(path), "each line must be a JSON object", line=number)
            yield number, obj


def source_name(path):
    """How errors name an input: its path, or <stdin> for `-`."""
    return "<stdin>" if str(path) == "-" else str(path)


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path, write, mode):
    """Write to a temporary file beside `path`, then rename: a failure never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~current_umask())    # mkstemp makes it 0600; a written file follows the umask
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextlib.contextmanager
def staged_directory(out_dir):
    """Yield `<out_dir>.partial` to build a whole output folder in; on success it replaces `out_dir`.

    On failure the staging folder is removed and `out_dir` is left as it was: no half-written output survives,
    and nothing already produced is lost.
    """
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)   # left by a run that was killed
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)


@contextlib.contextmanager
def reading(path):
    """Around the call that loads an artifact (np.load, torch.load, a LightGBM model): a truncated or altered
    file fails as one InputError naming it, not as the library's traceback."""
    try:
        yield
    except InputError:
        raise
    except Exception as err:    # each library has its own (BadZipFile, UnpicklingError, LightGBMError, ...)
        raise InputError(path, f"unreadable ({type(err).__name__}: {err}); if it came from the DVC cache, run "
                               f"`news-probes verify`, then `dvc repro`") from None


def write_json(path, obj):
    _atomic(path, lambda f: (json.dump(clean_floats(obj), f, indent=2, allow_nan=False), f.write("\n")), "w")


def write_jsonl(path, rows):
    _atomic(path, lambda f: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "w")


def write_bytes(path, save):
    """`save(f)` writes binary content (np.save, torch.save) through the same atomic rename."""
    _atomic(path, save, "wb")


def clean_floats(obj):
    """JSON has no NaN: undefined figures (e.g. Spearman of a constant prediction) become null."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_floats(v) for v in obj]
    return obj


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise InputError(path, f"malformed JSON at column {err.colno}: {err.msg}", line=err.lineno) from None
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8: byte 0x{err.object[err.start]:02x} at byte offset {err.start}") from None
