"""What the tests share besides fixtures: the repository root, generated datasets in both record shapes, a
throw-away copy of the project, and shell commands run in isolation from the user's DVC and git set-up."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
WORDS = ("clinic water school housing court peace farm river vaccine loan teacher council forest rights "
         "market harbour nurse bridge harvest library wage tenant solar flood").split()
DIMENSIONS = ["wellbeing", "cohesion", "justice"]
# For tests of what `device: auto` gives where no GPU is present (it picks CUDA where one is).
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="asserts the CPU choice of device: auto")
# What a throw-away copy of the repository needs to run the pipeline.
PROJECT_FILES = ["dvc.yaml", "params.yaml", "news_probes", ".dvc/config", ".dvcignore", ".gitignore", "Makefile"]


def sh(cmd, cwd, env, check=True):
    """Run a shell command; with check, fail the test with its output when it exits non-zero."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=True)
    if check:
        assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr
    return result


def isolated_env(root):
    """Environment for DVC and git in a temp tree: HOME (hence the default remote `~/...`) lies under root."""
    home = Path(root) / "home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "HOME": str(home), "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(Path(root) / "site"),
            "DVC_GLOBAL_CONFIG_DIR": str(home / "dvc-global"), "DVC_SYSTEM_CONFIG_DIR": str(home / "dvc-system"),
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def tiny_finetune_profile(qwen_dir, **overrides):
    """A finetune profile for the tiny Qwen2 of `tiny_qwen_dir`: a few LoRA steps in seconds."""
    return {"source": str(qwen_dir), "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"],
            "max_tokens": 32, "truncation": "head+tail", "epochs": 2, "batch_size": 16, "lr": 0.005,
            "warmup_steps": 1, **overrides}


def make_project(work, env, qwen_dir, records=80):
    """A git repository holding the pipeline, fast probe settings, the tiny Qwen2 as finetune profiles `tiny`
    (the default) and `tiny-b`, and `records` generated articles."""
    work = Path(work)
    for name in PROJECT_FILES:
        src, dst = REPO / name, work / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    for cache in (work / "news_probes").rglob("__pycache__"):
        shutil.rmtree(cache)
    (work / "data").mkdir()
    write_lines(work / "data" / "raw.jsonl", make_records(records))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["raw"] = "data/raw.jsonl"
    params["probes"]["mlp"].update(epochs=30, patience=5)
    params["probes"]["lightgbm"].update(n_estimators=60, early_stopping_rounds=10)
    params["finetune"]["profiles"].update(tiny=tiny_finetune_profile(qwen_dir),
                                          **{"tiny-b": tiny_finetune_profile(qwen_dir, r=2, epochs=1)})
    params["finetune"]["profile"] = "tiny"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git init -q -b main && git add -A && git commit -qm init", work, env)
    return work


def write_lines(path, rows):
    """Write JSONL; a str row is written as it is (for malformed-input tests)."""
    path = Path(path)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def make_records(n, shape="study", seed=0, dimensions=DIMENSIONS):
    """Records whose scores depend on which words the text uses, so probes have something to learn."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(-1, 1, size=(len(WORDS), len(dimensions)))
    rows = []
    for i in range(n):
        counts = rng.poisson(1.0, size=len(WORDS))
        text = " ".join(w for w, c in zip(WORDS, counts) for _ in range(c)) or WORDS[i % len(WORDS)]
        labels = np.clip(5 + counts @ weights, 0, 10).round(1).tolist()
        if shape == "study":
            rows.append({"id": f"r{i}", "title": f"Story {i}", "content": text, "language": "en",
                         "labels": labels, "dimension_names": list(dimensions)})
        else:
            rows.append({"id": f"r{i}", "title": "", "text": text, "scores": dict(zip(dimensions, labels))})
    return rows
