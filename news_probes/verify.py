"""`news-probes verify`: re-hash what the current dvc.lock points to, so that a corrupted cache object is found
instead of being checked out and trained on.

DVC trusts its local cache: `dvc status`, `dvc checkout` and `dvc repro` (run-cache restores included) take an
object's file name for its hash and do not read its content back; only downloads are re-hashed, with the remote's
`verify = true`. Here every cached output of every stage in dvc.lock is hashed again with DVC's own hash function
(each file object, each folder's `.dir` manifest and every file it lists) and so is its workspace copy.

Repairs, so that the next `dvc repro` rebuilds what it cannot trust instead of restoring it:
- a bad cache object is restored from its workspace copy when that copy hashes right, otherwise removed;
- the stage that wrote an output whose workspace copy is bad (or whose folder manifest is), and every stage that
  depends on such an output (it read the bad bytes, under the right hash), are dropped from dvc.lock and their
  outputs removed: `dvc repro` runs them again instead of checking their recorded outputs out of the cache;
- every run-cache entry whose dependencies or outputs name a bad hash is removed (it would restore those outputs).
"""
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Finding:
    """One corrupted file: a cache object or a workspace copy, of which output of which stage."""
    kind: str               # "cache object" or "workspace file"
    path: str
    stage: str
    output: str             # the output as dvc.yaml names it
    label: str              # the file within it
    expected: str
    actual: str = None      # None: unreadable
    good_copy: str = None   # a workspace file with the expected hash (a cache object can be restored from it)


@dataclass
class Report:
    checked: int = 0
    missing: int = 0        # objects not in the cache (not pulled, or cache: false): nothing to check
    hashed: set = field(default_factory=set)     # cache objects already hashed (outputs may share one)
    findings: list = field(default_factory=list)
    actions: list = field(default_factory=list)

    root: str = "."         # paths are printed relative to it

    def lines(self):
        found = [f"corrupted {f.kind}: {os.path.relpath(f.path, self.root)} (stage {f.stage}, output {f.label}): "
                 f"{'hashes to ' + f.actual if f.actual else 'unreadable'}, dvc.lock expects {f.expected}"
                 for f in self.findings]
        return found + self.actions


def file_hash(path, hash_name="md5"):
    """DVC's hash of a file's bytes (the function DVC names its cache objects with); None if unreadable."""
    from dvc_data.hashfile.hash import file_md5
    try:
        return file_md5(str(path), name=hash_name)
    except OSError:
        return None


def manifest(path):
    """The (relpath, md5) entries of a `.dir` object; None if it is not a readable manifest."""
    try:
        with open(path, encoding="utf-8") as f:
            return [(entry["relpath"], entry["md5"]) for entry in json.load(f)]
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _check_output(report, stage, out):
    """Findings for one cached output: its object(s) and its workspace copy."""
    odb, name, oid = out.cache, out.hash_name, out.hash_info.value
    files = [(out.def_path, oid, Path(out.fs_path))]
    if out.hash_info.isdir:
        # the manifest first: its entries are trusted only once it hashes right
        files = [(out.def_path + "/", oid, None)]
        before = len(report.findings)
        _check_files(report, stage, out, files)
        if len(report.findings) > before or not os.path.exists(odb.oid_to_path(oid)):
            return
        files = [(f"{out.def_path}/{rel}", md5, Path(out.fs_path) / rel)
                 for rel, md5 in manifest(odb.oid_to_path(oid)) or []]
    _check_files(report, stage, out, files)


def _check_files(report, stage, out, files):
    """(label, expected hash, workspace path or None) for each file: hash the cache object and the copy."""
    odb, name = out.cache, out.hash_name
    for label, expected, workspace in files:
        expected_hash = expected.removesuffix(".dir")
        present = workspace is not None and workspace.exists()
        copy_hash = file_hash(workspace, name) if present else None
        if present:
            report.checked += 1
            if copy_hash != expected_hash:
                report.findings.append(Finding("workspace file", str(workspace), stage, out.def_path, label,
                                               expected, copy_hash))
        path = odb.oid_to_path(expected)
        if path in report.hashed:
            continue
        report.hashed.add(path)
        if not os.path.exists(path):
            report.missing += 1
            continue
        report.checked += 1
        actual = file_hash(path, name)
        if actual != expected_hash:
            good = str(workspace) if copy_hash == expected_hash else None
            report.findings.append(Finding("cache object", path, stage, out.def_path, label, expected, actual,
                                           good))


def check(repo):
    """Hash every cached output of dvc.lock (a dvc.repo.Repo); return a Report. Nothing is changed."""
    report = Report(root=repo.root_dir)
    for stage in repo.index.stages:
        for out in stage.outs:
            if out.use_cache and out.hash_info and out.hash_info.value:
                _check_output(report, stage.name, out)
    return report


def _remove(path):
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        os.chmod(path, 0o644)       # DVC makes cache objects read-only
        path.unlink()


def _suspect_stages(repo, report):
    """Stages whose recorded outputs cannot be trusted: the one that wrote an output with a bad workspace file
    (or a bad manifest), and every stage that depends on such an output (it read the bad bytes)."""
    bad = {f.output for f in report.findings if f.kind == "workspace file" or f.label.endswith("/")}

    def overlaps(path):
        return any(path == b or path.startswith(b + "/") or b.startswith(path + "/") for b in bad)
    return [stage for stage in repo.index.stages
            if any(out.def_path in bad for out in stage.outs) or any(overlaps(dep.def_path) for dep in stage.deps)]


def _bad_hashes(repo, report, suspects):
    """Every hash a run-cache entry could name for what is bad: each bad file's and its output's (unless restored
    from an intact copy: an entry names a folder by its `.dir` hash only), and each output of a suspect stage."""
    unrestored = [f for f in report.findings if not f.good_copy]
    bad_outputs, suspect_names = {f.output for f in unrestored}, {stage.name for stage in suspects}
    hashes = {f.expected for f in unrestored}
    hashes.update(out.hash_info.value for stage in repo.index.stages for out in stage.outs
                  if (stage.name in suspect_names or out.def_path in bad_outputs)
                  and out.hash_info and out.hash_info.value)
    return hashes


def _run_cache_entries(root, hashes):
    """Run-cache entries (lock-file stages under .dvc/cache/runs) whose deps or outs name one of `hashes`."""
    hits = []
    for path in sorted(p for p in Path(root).glob("*/*/*") if p.is_file()):
        try:
            entry = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            named = {item.get("md5") for item in (entry.get("deps") or []) + (entry.get("outs") or [])}
        except (OSError, yaml.YAMLError, UnicodeDecodeError, AttributeError):
            named = hashes      # unreadable: DVC would drop it too
        if named & hashes:
            hits.append(path)
    return hits


def repair(repo, report):
    """Act on check()'s findings (see the module's docstring); the actions are added to report.actions."""
    from dvc.dvcfile import Lockfile
    root = Path(repo.root_dir)
    for f in report.findings:
        if f.kind != "cache object":
            continue
        _remove(f.path)
        if f.good_copy:
            shutil.copyfile(f.good_copy, f.path)
            os.chmod(f.path, 0o444)
            report.actions.append(f"restored {os.path.relpath(f.path, root)} from its intact workspace copy "
                                  f"{os.path.relpath(f.good_copy, root)}")
        else:
            report.actions.append(f"removed {os.path.relpath(f.path, root)}")
    suspects = _suspect_stages(repo, report)
    for stage in suspects:
        # dropped from dvc.lock: with its entry, `dvc repro` would check its recorded outputs out of the cache
        # ("is cached - skipping run") instead of running it on the rebuilt inputs
        Lockfile(repo, os.path.splitext(stage.dvcfile.path)[0] + ".lock").remove_stage(stage)
        removed = [out.def_path for out in stage.outs if Path(out.fs_path).exists()]
        for out in stage.outs:
            _remove(out.fs_path)
        report.actions.append(f"dropped stage {stage.name} from dvc.lock and removed its outputs "
                              f"{', '.join(removed) or '(none present)'}: it wrote or read corrupted bytes")
    for entry in _run_cache_entries(repo.stage_cache.cache_dir, _bad_hashes(repo, report, suspects)):
        entry.unlink()
        if not any(entry.parent.iterdir()):
            entry.parent.rmdir()
        report.actions.append(f"removed run-cache entry {os.path.relpath(entry, root)}")
    return report


def verify(repo_root=".", dry_run=False):
    """check(), then repair() unless dry_run; returns the Report."""
    from dvc.repo import Repo
    with Repo(str(repo_root)) as repo:
        report = check(repo)
        if report.findings and not dry_run:
            repair(repo, report)
    return report
