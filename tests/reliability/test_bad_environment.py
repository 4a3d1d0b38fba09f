"""Catalogue, environment: a read-only output folder, a full disk, and two pipeline runs started in the
same folder."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline.workspace import make_workspace, snakemake
from tests.reliability.scripts import assert_fails_cleanly, run_script
from tests.reliability.test_bad_config import corpus_outputs, make_corpus_args

SMALL_CORPUS = "corpus:\n  synth:\n    n_train: 4\n    n_val: 2\n    n_test: 2\n"


def small_corpus_overlay(tmp_path: Path) -> Path:
    overlay = tmp_path / "small.yaml"
    overlay.write_text(SMALL_CORPUS)
    return overlay


@pytest.mark.slow
def test_read_only_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # As root, file permissions are not enforced: only a read-only mount makes the folder unwritable.
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(out)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = run_script("make_corpus.py", make_corpus_args(tmp_path, small_corpus_overlay(tmp_path)))
        assert_fails_cleanly(
            result,
            rf"{out}/\S*: Read-only file system",
            r"make the output folder writable",
            corpus_outputs(tmp_path),
        )
    finally:
        subprocess.run(["umount", str(out)], check=True)


def limit_file_size() -> None:
    """A disk that fills after 20 kB per file; the write then fails with EFBIG instead of a signal."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


@pytest.mark.slow
def test_full_disk(tmp_path: Path) -> None:
    args = make_corpus_args(tmp_path, small_corpus_overlay(tmp_path))
    result = run_script("make_corpus.py", args, preexec_fn=limit_file_size)
    assert_fails_cleanly(
        result,
        rf"{tmp_path}/out/\S+: File too large",
        r"raise it \(ulimit -f\) or free space",
        corpus_outputs(tmp_path),
    )


@pytest.mark.slow
def test_two_runs_in_the_same_folder(tmp_path: Path) -> None:
    """Snakemake's lock: a second run refuses to start while the first holds the folder, and says how to
    clear a lock left by a killed run; the first run finishes untouched."""
    work = make_workspace(tmp_path / "work")
    (work / "configs" / "small.yaml").write_text(SMALL_CORPUS)
    target = ["results/corpus/synth.json", "--cores", "1", "--configfile", "configs/small.yaml"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.Popen(
        ["snakemake", *target],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list((work / ".snakemake" / "locks").glob("*")) and first.poll() is None:
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.2)
        # Paused, the first run holds its lock for as long as the second takes, however fast its job is.
        os.killpg(first.pid, signal.SIGSTOP)
        try:
            second = snakemake(target, work)
        finally:
            os.killpg(first.pid, signal.SIGCONT)
    finally:
        first_log = first.communicate(timeout=600)[0]
    assert first.returncode == 0, first_log[-3000:]
    assert second.returncode != 0
    assert "Directory cannot be locked" in second.stderr and str(work) in second.stderr
    assert "--unlock" in second.stderr
    assert (work / "results/corpus/synth.json").stat().st_size > 0
