"""Remote storage against real storage: two clones sharing the committed default remote (a local directory),
an S3 server on loopback (moto), faults (credentials, endpoints, interrupted pushes, corrupted objects),
shared experiments and the run-cache, and a private raw dataset brought in with `dvc add`.

Select them with `pytest -m storage`; they are slow too, so `make test` (and CI) runs them.
"""
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import isolated_env, make_project, sh

pytestmark = [pytest.mark.slow, pytest.mark.storage]
DVC_OUTPUTS = ["data/prepared", "data/embeddings", "models/probes"]
QUALITY_METRICS = "metrics/summary.json metrics/probes metrics/data.json"


def tree_digest(work):
    """md5 of every file under the DVC outputs, by relative path."""
    return {p.relative_to(work).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for out in DVC_OUTPUTS for p in sorted((Path(work) / out).rglob("*")) if p.is_file()}


def clone(origin, dest, env):
    sh(f"git clone -q {origin} {dest}", Path(dest).parent, env)
    return Path(dest)


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_qwen_dir):
    """A bare git origin and clone A, in which the pipeline has run and been committed (nothing pushed)."""
    root = tmp_path_factory.mktemp("storage")
    env = isolated_env(root)
    a = make_project(root / "a", env, tiny_qwen_dir)
    sh("dvc repro -q && git add -A && git commit -qm run", a, env)
    sh(f"git clone -q --bare {a} {root / 'origin.git'} && git remote add origin {root / 'origin.git'}", a, env)
    sh("git fetch -q origin && git branch -q -u origin/main", a, env)
    return root, a, env


def test_fresh_clone_pulls_what_another_clone_pushed(project):
    root, a, env = project
    sh("dvc push", a, env)
    # The committed default remote is ~/dvc-storage/news-probes; HOME lies under the test's temp dir.
    assert any((Path(env["HOME"]) / "dvc-storage" / "news-probes" / "files" / "md5").rglob("*"))
    b = clone(root / "origin.git", root / "b", env)
    sh("dvc pull", b, env)
    assert "up to date" in sh("dvc status", b, env)
    assert "Running stage" not in sh("dvc repro", b, env)
    assert tree_digest(b) == tree_digest(a)
    # Metrics recomputed in B from the pulled predictions equal those A committed.
    sh("dvc repro -f -s evaluate", b, env)
    assert sh(f"git status --porcelain {QUALITY_METRICS}", b, env) == ""


def test_a_corrupted_remote_object_is_refused_on_pull(project, tmp_path):
    root, a, env = project
    sh("dvc push", a, env)
    store = tmp_path / "store"
    shutil.copytree(Path(env["HOME"]) / "dvc-storage" / "news-probes", store)
    target = "models/probes/all-MiniLM-L6-v2/ridge/test_predictions.npz"
    md5 = hashlib.md5((a / target).read_bytes()).hexdigest()
    obj = store / "files" / "md5" / md5[:2] / md5[2:]
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes()[:-8] + b"corrupt!")

    c = clone(root / "origin.git", tmp_path / "c", env)
    sh(f"dvc remote modify --local storage url {store}", c, env)
    pulled = sh("dvc pull", c, env, check=False)
    assert pulled.returncode != 0 and "Checkout failed" in pulled.stderr
    assert not (c / target).exists()
    # Whatever was checked out is intact: every file present equals A's.
    digest_a, digest_c = tree_digest(a), tree_digest(c)
    assert digest_c and all(digest_a[path] == md5_ for path, md5_ in digest_c.items())
    # The committed `verify = true` is what catches it: without it, the corrupted file is checked out silently.
    d = clone(root / "origin.git", tmp_path / "d", env)
    sh(f"dvc remote modify --local storage url {store} && dvc remote modify --local storage verify false", d, env)
    sh("dvc pull", d, env)
    assert hashlib.md5((d / target).read_bytes()).hexdigest() != md5


def test_shared_experiment_and_run_cache(project):
    root, a, env = project
    sh("dvc exp run -q -n only-mlp -S probe=mlp", a, env)
    summary = (a / "metrics" / "summary.json").read_text()
    sh("dvc exp push origin only-mlp && dvc push --run-cache", a, env)
    sh("git checkout -q -- . && dvc checkout -q", a, env)

    b = clone(root / "origin.git", root / "b-exp", env)
    sh("dvc exp pull origin only-mlp", b, env)
    sh("dvc exp apply only-mlp && dvc pull", b, env)
    assert (b / "metrics" / "summary.json").read_text() == summary
    assert "up to date" in sh("dvc status", b, env)

    # With the run-cache, a teammate's `exp run` of a configuration already run anywhere restores the probes
    # instead of training them; evaluate and report (outputs kept in git, not in the remote) run, in seconds.
    c = clone(root / "origin.git", root / "c-exp", env)
    sh("dvc pull --run-cache", c, env)
    out = sh("dvc exp run --pull -S probe=mlp", c, env)
    assert "Stage 'probe@all-MiniLM-L6-v2' is cached - skipping run" in out
    assert "Running stage 'probe@" not in out and "Running stage 'embed@" not in out
    # The adapter too: reused from the run-cache, never retrained on the teammate's machine.
    assert "Running stage 'finetune'" not in out and (c / "models/adapters/tiny/adapter_model.safetensors").is_file()
    assert (c / "metrics" / "summary.json").read_text() == summary


def test_raw_dataset_is_versioned_and_pulled_exactly(project, shared_datasets):
    source = shared_datasets / "emobank" / "data.jsonl"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    root, a, env = project
    work = clone(root / "origin.git", root / "raw-a", env)
    sh("git branch -q -u origin/main", work, env)
    raw = work / "data" / "raw" / "emobank.jsonl"
    raw.parent.mkdir(parents=True)
    shutil.copy(source, raw)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"].update(raw="data/raw/emobank.jsonl", score_range="auto")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("dvc add -q data/raw/emobank.jsonl && git add -A && git commit -qm 'emobank v1' && dvc push", work, env)
    first = hashlib.md5(raw.read_bytes()).hexdigest()
    lines = raw.read_text().splitlines(keepends=True)
    raw.write_text("".join(lines[:5000]))          # a second version of the dataset
    sh("dvc add -q data/raw/emobank.jsonl && git commit -qam 'emobank v2' && dvc push && git push -q origin HEAD:raw",
       work, env)

    b = root / "raw-b"
    sh(f"git clone -q -b raw {root / 'origin.git'} {b}", root, env)
    sh("dvc pull data/raw/emobank.jsonl.dvc", b, env)
    assert len((b / "data" / "raw" / "emobank.jsonl").read_text().splitlines()) == 5000
    sh("git checkout -q HEAD~1 && dvc pull data/raw/emobank.jsonl.dvc", b, env)   # the earlier version
    assert hashlib.md5((b / "data" / "raw" / "emobank.jsonl").read_bytes()).hexdigest() == first
    # The pipeline takes the pulled file as its input.
    assert "Running stage 'prepare'" in sh("dvc repro prepare", b, env)


# --- S3 on loopback -------------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto_server on 127.0.0.1 and a free port, stopped by its process id at the end."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "w")
    server = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert server.poll() is None, "moto_server exited at start"
            time.sleep(0.2)
    yield url
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=10)
    log.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5)


def s3_env(env, endpoint):
    """Endpoint and credentials from the environment only, as users set them; no metadata-service lookups."""
    return {**env, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def make_bucket(endpoint, name):
    import boto3
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return client


def object_count(client, bucket):
    return client.list_objects_v2(Bucket=bucket).get("KeyCount", 0)


def test_s3_round_trip(project, s3_server, tmp_path):
    root, a, env = project
    env = s3_env(env, s3_server)
    client = make_bucket(s3_server, "round-trip")
    work = clone(root / "origin.git", tmp_path / "a-s3", env)
    sh("dvc pull -q", work, env)
    # The documented switch: a new default remote, committed; nothing secret in the config.
    sh("dvc remote add -d team s3://round-trip/news-probes && git commit -qam 'S3 remote'", work, env)
    sh("dvc push -r team", work, env)
    assert object_count(client, "round-trip") > 0
    assert "testing" not in (work / ".dvc" / "config").read_text()
    assert not (work / ".dvc" / "config.local").exists()

    b = clone(work, tmp_path / "b-s3", env)
    sh("dvc pull", b, env)
    assert "up to date" in sh("dvc status", b, env)
    assert tree_digest(b) == tree_digest(a)


def test_interrupted_push_completes_when_rerun(project, s3_server, tmp_path):
    root, a, env = project
    env = s3_env(env, s3_server)
    client = make_bucket(s3_server, "interrupted")
    sh("dvc remote add --local interrupted s3://interrupted/store", a, env)
    total = len(tree_digest(a))
    push = subprocess.Popen("exec dvc push -r interrupted -j 1", shell=True, cwd=a, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while object_count(client, "interrupted") < 3 and push.poll() is None:
        time.sleep(0.01)
    push.kill()
    push.wait()
    pushed_before = object_count(client, "interrupted")
    assert push.returncode == -signal.SIGKILL and 0 < pushed_before < total
    out = sh("dvc push -r interrupted", a, env)
    assert f"{object_count(client, 'interrupted') - pushed_before} files pushed" in out
    c = clone(root / "origin.git", tmp_path / "c", env)
    sh("dvc remote add --local interrupted s3://interrupted/store && dvc pull -r interrupted", c, env)
    assert tree_digest(c) == tree_digest(a)


def test_missing_credentials_fail_fast_and_clearly(project, s3_server):
    root, a, env = project
    env = {k: v for k, v in s3_env(env, s3_server).items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    make_bucket(s3_server, "no-credentials")
    sh("dvc remote add --local nocreds s3://no-credentials/store", a, env)
    start = time.time()
    result = sh("dvc push -r nocreds", a, env, check=False)
    assert result.returncode != 0 and time.time() - start < 20
    assert "Unable to locate credentials" in result.stderr


def test_unreachable_endpoints_fail_within_seconds(project):
    root, a, env = project
    # Nothing listening: the connection is refused.
    refused = s3_env(env, f"http://127.0.0.1:{free_port()}")
    sh("dvc remote add --local unreachable s3://nowhere/store", a, refused)
    start = time.time()
    result = sh("dvc push -r unreachable", a, refused, check=False)
    assert result.returncode != 0 and time.time() - start < 30
    assert "Could not connect to the endpoint URL" in result.stderr

    # A server that accepts connections and never answers: bounded by the remote's timeouts (docs/storage.md).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        hanging = s3_env(env, f"http://127.0.0.1:{silent.getsockname()[1]}") | {"AWS_MAX_ATTEMPTS": "1"}
        sh("dvc remote modify --local unreachable read_timeout 2 && "
           "dvc remote modify --local unreachable connect_timeout 2", a, env)
        start = time.time()
        result = sh("dvc push -r unreachable", a, hanging, check=False)
        elapsed = time.time() - start
    assert result.returncode != 0 and elapsed < 60, elapsed
    assert "timeout" in result.stderr.lower()
