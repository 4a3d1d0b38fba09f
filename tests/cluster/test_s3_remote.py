"""DVC's S3 remote round trip on the ci run's outputs: commit, push to an S3 server on loopback (moto's
server mode), wipe the cache and the outputs, pull, and find every file as it was."""

from __future__ import annotations

import hashlib
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from dvc.repo import Repo
from moto.server import ThreadedMotoServer

from avsr_sinks.settings.config import load_params
from avsr_sinks.workflow.dvc_yaml import render
from tests.conftest import REPO
from tests.pipeline.workspace import run

BUCKET = "avsr-sinks"
# moto accepts any credentials; these stand for the ones a user keeps in .dvc/config.local.
ACCESS_KEY, SECRET_KEY = "test-access-key", "test-secret-key"


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _dvc(args: list[str], cwd: Path) -> str:
    result = run(["dvc", *args], cwd)
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _cached_outputs(work: Path) -> list[Path]:
    with Repo(str(work)) as repo:
        return sorted(work / str(out.def_path) for out in repo.index.outs if out.use_cache)


def _file_hashes(paths: list[Path], work: Path) -> dict[str, str]:
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f.relative_to(work)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.mark.slow
def test_push_wipe_pull_restores_every_file(
    ci_run: tuple[Path, str], tmp_path: Path, s3_endpoint: str
) -> None:
    work = tmp_path / "work"
    shutil.copytree(ci_run[0], work, ignore=shutil.ignore_patterns(".snakemake"))
    # DVC reads params.yaml alone: give it the ci configuration, and the stages generated from it.
    params = load_params([work / "params.yaml", work / "configs/ci.yaml"])
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / "dvc.yaml").write_text(render(params))
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))  # stage deps

    _dvc(["init", "--no-scm"], work)
    _dvc(["commit", "--force"], work)
    boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY
    ).create_bucket(Bucket=BUCKET)
    _dvc(["remote", "add", "--default", "storage", f"s3://{BUCKET}/cache"], work)
    _dvc(["remote", "modify", "storage", "endpointurl", s3_endpoint], work)
    _dvc(["remote", "modify", "--local", "storage", "access_key_id", ACCESS_KEY], work)
    _dvc(["remote", "modify", "--local", "storage", "secret_access_key", SECRET_KEY], work)
    assert SECRET_KEY in (work / ".dvc/config.local").read_text()
    assert SECRET_KEY not in (work / ".dvc/config").read_text()

    outputs = _cached_outputs(work)
    kinds = {p.relative_to(work).parts[:2] for p in outputs}
    assert {("data", "corpus"), ("data", "features"), ("data", "models"), ("results", "checkpoints")} <= kinds
    before = _file_hashes(outputs, work)
    assert len(before) > 100

    _dvc(["push"], work)
    shutil.rmtree(work / ".dvc/cache")
    for path in outputs:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert _file_hashes(outputs, work) == {}
    _dvc(["pull"], work)

    assert _file_hashes(outputs, work) == before
    assert "up to date" in _dvc(["status"], work).lower()
