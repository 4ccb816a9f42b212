"""The install path: constraints.txt pins everything pyproject.toml asks for, and `make install` takes the CPU
build of torch where no NVIDIA driver is present, PyPI's (CUDA) build where one is."""
import os
import re
import shutil
import subprocess
import tomllib

import pytest

from helpers import REPO

CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned():
    """{package: version} of constraints.txt."""
    lines = (line.strip() for line in (REPO / "constraints.txt").read_text().splitlines())
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {canonical(name): version for name, version in pairs}


def test_every_dependency_and_dev_tool_is_pinned():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    names = {canonical(re.match(r"[A-Za-z0-9_.-]+", spec).group()) for spec in wanted}
    assert names - set(pinned()) == set()
    assert pinned()["torch"] == "2.13.0"            # no build label: the pin holds for the CPU and CUDA builds


def torch_install_line(tmp_path, with_driver, *overrides):
    """The pip line `make install` would run for torch, from a dry run (make -n) of a fresh venv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    driver = bin_dir / "nvidia-smi"
    if with_driver:
        driver.write_text("#!/bin/sh\nexit 0\n")
        driver.chmod(0o755)
    elif driver.exists():
        driver.unlink()
    venv = tmp_path / "venv"
    done = subprocess.run(["make", "-n", "-B", f"VENV={venv}", *overrides, f"{venv}/.installed"], cwd=REPO,
                          capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.path.dirname(shutil.which('make'))}:/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    joined = done.stdout.replace("\\\n", " ")
    return next(line for line in joined.splitlines() if "torch==2.13.0" in line)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_install_takes_the_cpu_torch_without_a_driver_and_pypis_with_one(tmp_path):
    assert CPU_INDEX in torch_install_line(tmp_path, with_driver=False)
    assert "--extra-index-url" not in torch_install_line(tmp_path, with_driver=True)
    assert "--extra-index-url" not in torch_install_line(tmp_path, False, "TORCH_INDEX=")
    other = "https://download.pytorch.org/whl/cu128"
    assert f"--extra-index-url {other}" in torch_install_line(tmp_path, True, f"TORCH_INDEX={other}")
