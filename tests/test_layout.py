"""The package layout: stages are thin and independent, the scorer needs no stage, and every stage's code deps
in dvc.yaml are exactly the modules it imports (so editing a module re-runs the stages that use it, no others)."""
import ast
import re
from pathlib import Path

import pytest
import yaml

from helpers import REPO

PACKAGE = REPO / "news_probes"
STAGES = sorted(p.stem for p in (PACKAGE / "stages").glob("*.py") if p.stem != "__init__")


def module_path(module):
    return REPO / Path(*module.split(".")).with_suffix(".py")


def imported(path):
    """The news_probes modules a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("news_probes"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if module_path(n).is_file()} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("news_probes")}
    return found


def closure(module):
    """`module` and every package module it reaches through imports, as repository-relative paths."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += sorted(imported(module_path(current)))
    return {module_path(m).relative_to(REPO).as_posix() for m in seen}


def dvc_stages():
    """{dvc.yaml stage name: its spec (a foreach stage's `do`)}."""
    return {name: spec.get("do", spec) for name, spec in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items()}


DVC_STAGES = sorted(dvc_stages())


def stage_module(stage):
    """The stage module a dvc.yaml stage runs (`python -m news_probes.stages.<module>`)."""
    return re.search(r"python -m news_probes\.stages\.(\w+)", dvc_stages()[stage]["cmd"]).group(1)


def stage_code_deps(stage):
    return {d for d in dvc_stages()[stage]["deps"] if d.startswith("news_probes/")}


def test_every_stage_module_runs_in_dvc_yaml_and_every_dvc_stage_runs_a_module():
    assert STAGES == sorted({stage_module(s) for s in DVC_STAGES})
    # probe-combined runs the probe module on the combined embeddings; every other stage has its own module
    assert {s: stage_module(s) for s in DVC_STAGES if s != stage_module(s)} == {"probe-combined": "probe"}


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_imports_another_stage(stage):
    others = {f"news_probes/stages/{s}.py" for s in STAGES if s != stage}
    assert not closure(f"news_probes.stages.{stage}") & others


@pytest.mark.parametrize("stage", DVC_STAGES)
def test_code_deps_in_dvc_yaml_are_the_modules_the_stage_imports(stage):
    assert stage_code_deps(stage) == closure(f"news_probes.stages.{stage_module(stage)}")


def test_package_inits_hold_no_code():
    """They are imported by every stage but are not deps: nothing in them may change what a stage computes."""
    for init in PACKAGE.rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        assert len(body) <= 1 and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def test_the_scorer_and_the_command_import_no_stage():
    for module in ("news_probes.scoring", "news_probes.cli"):
        assert not any(path.startswith("news_probes/stages/") for path in closure(module)), module


def test_finetune_does_not_depend_on_the_encode_code():
    assert "news_probes/embedders.py" not in stage_code_deps("finetune")
    assert "news_probes/probes.py" not in stage_code_deps("finetune")


def test_report_loads_no_model_and_times_nothing():
    code = closure("news_probes.stages.report")
    for module in ("embedders", "probes", "lora", "scoring", "sources", "hardware", "timing"):
        assert f"news_probes/{module}.py" not in code, module
