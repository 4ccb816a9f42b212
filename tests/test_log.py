"""Log records and progress bars (news_probes.log): the level from --log-level or NEWS_PROBES_LOG_LEVEL, bars only
at INFO and below, records that do not break a bar, quiet under the suite's WARNING."""
import logging
import os
import re
import subprocess
import sys

import pytest

from helpers import REPO, make_records, write_lines
from news_probes import log

RECORD = re.compile(r"^\d\d:\d\d:\d\d INFO ")


@pytest.fixture
def package_logger():
    """The package logger restored after a test that configures it (configure turns propagation off)."""
    saved = log.logger.level, log.logger.propagate, list(log.logger.handlers)
    yield log.logger
    log.logger.setLevel(saved[0])
    log.logger.propagate = saved[1]
    log.logger.handlers[:] = saved[2]


def run_python(code, level=None):
    env = {k: v for k, v in os.environ.items() if k != log.LEVEL_VARIABLE}
    if level is not None:
        env[log.LEVEL_VARIABLE] = level
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)


def test_levels_are_read_case_insensitively_and_unknown_ones_name_their_source():
    assert log.parse_level("debug", "x") == logging.DEBUG and log.parse_level(" Warning ", "x") == logging.WARNING
    assert log.parse_level(None, "x") == log.parse_level("", "x") == logging.INFO
    with pytest.raises(ValueError, match=r"NEWS_PROBES_LOG_LEVEL: 'loud' is not a log level \(one of DEBUG, INFO"):
        log.parse_level("loud", log.LEVEL_VARIABLE)


def test_configure_sets_the_level_once_handled(package_logger, monkeypatch):
    monkeypatch.setenv(log.LEVEL_VARIABLE, "error")
    assert log.configure() == logging.ERROR
    assert log.configure("info") == logging.INFO            # the flag wins over the environment
    assert sum(isinstance(h, log.BarSafeHandler) for h in package_logger.handlers) == 1
    assert package_logger.isEnabledFor(logging.INFO) and not package_logger.isEnabledFor(logging.DEBUG)


def test_bars_show_at_info_and_below_only(package_logger):
    log.configure("INFO")
    assert not log.progress(range(2)).disable
    assert log.progress(range(2), enabled=False).disable       # a caller's own switch (a single seed, stdout)
    log.configure("WARNING")
    assert log.progress(range(2)).disable


def test_records_land_between_bar_redraws_whole():
    code = ("from news_probes import log\nlog.configure()\n"
            "for i in log.progress(range(3), desc='work', unit='item'):\n    log.logger.info(f'item {i}')\n")
    done = run_python(code, level="info")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [line[9:] for line in lines if RECORD.match(line)] == ["INFO item 0", "INFO item 1", "INFO item 2"]
    assert any(line.startswith("work: 100%") and "3/3" in line for line in lines), done.stderr
    quiet = run_python(code, level="WARNING")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_a_stage_logs_at_the_environment_level_and_refuses_an_unknown_one(tmp_path):
    raw = write_lines(tmp_path / "raw.jsonl", make_records(40))
    command = [sys.executable, "-m", "news_probes.stages.prepare", "--params", str(REPO / "params.yaml"),
               "--raw", str(raw), "--out", str(tmp_path / "prepared"), "--metrics", str(tmp_path / "data.json")]

    def stage(level):
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                              env={**os.environ, log.LEVEL_VARIABLE: level})

    shown = stage("info")
    assert shown.returncode == 0 and shown.stdout == "", shown.stderr
    assert any(RECORD.match(line) and "prepare: 3 dimensions" in line for line in shown.stderr.splitlines())
    quiet = stage("warning")
    assert quiet.returncode == 0 and quiet.stdout == quiet.stderr == ""
    refused = stage("loud")
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "error: environment: NEWS_PROBES_LOG_LEVEL: 'loud' is not a log level (one of DEBUG, INFO, WARNING, ERROR)")
