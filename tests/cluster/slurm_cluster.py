"""A real single-node SLURM cluster in a scratch folder: munged, slurmctld and slurmd started directly
(no systemd), their configuration, state and logs under that folder, stopped by PID afterwards.

Debian's packages `munge slurmctld slurmd slurm-client` provide the daemons (`.ci/run` installs them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
SBIN = Path("/usr/sbin")
# Inside a job, Snakemake's job step clears the SLURM_* variables (SLURM_CONF too) before its srun, which
# then reads the system's configuration file: for the run it is a link to the scratch one.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
PARTITION = "ci"
# slurmd's config_overrides lets this one node advertise the size of a cluster node (CPUs, memory, a GPU)
# whatever the machine has, so that profiles/slurm is submitted exactly as shipped. Its GPU is a stand-in
# device file: SLURM schedules it and sets CUDA_VISIBLE_DEVICES, and the CPU-only torch ignores it.
NODE_CPUS = 16
NODE_MEMORY_MB = 64000
# squeue sees a finished job for MinJobAge seconds: at least 3 x the status-check delay of any run here.
MIN_JOB_AGE_S = 300


def why_unavailable() -> str | None:
    """Why a scratch cluster cannot start here, or None if it can."""
    missing = [str(SBIN / d) for d in DAEMONS if not (SBIN / d).exists()]
    missing += [tool for tool in ("sbatch", "squeue", "sinfo", "srun") if shutil.which(tool) is None]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing; .ci/run installs it)"
    if SYSTEM_CONF.exists():
        return f"{SYSTEM_CONF} exists: this machine has a SLURM configuration of its own, left untouched"
    if os.geteuid() != 0:
        return "starting slurmd takes root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(root: Path, node: str, controller_port: int) -> str:
    return f"""\
ClusterName=ci
SlurmctldHost=localhost
SlurmctldPort={controller_port}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
MailProg=/bin/true
MinJobAge={MIN_JOB_AGE_S}
ReturnToService=2
NodeName={node} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _start_munge(root: Path) -> None:
    munge = root / "munge"
    munge.mkdir()
    munge.chmod(0o755)  # munged insists that everyone may reach its socket
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    _start(
        [
            SBIN / "munged",
            f"--socket={munge}/munge.socket",
            f"--key-file={key}",
            f"--pid-file={root}/munged.pid",
            f"--log-file={root}/log/munged.log",
            f"--seed-file={munge}/munged.seed",
        ],
        root,
    )


def _start(command: list[str | Path], root: Path, env: dict[str, str] | None = None) -> None:
    started = subprocess.run(command, env=env, capture_output=True, text=True)
    if started.returncode != 0:
        logs = "\n".join(p.read_text()[-1500:] for p in sorted((root / "log").glob("*.log")))
        raise RuntimeError(f"{command[0]} failed to start: {started.stderr.strip()}\n{logs}")


def _wait_for_idle_node(env: dict[str, str], root: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        probe = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True)
        state = probe.stdout.strip()
        if state == "idle":
            return
        time.sleep(0.5)
    logs = "\n".join((root / "log" / name).read_text()[-1500:] for name in ("slurmctld.log", "slurmd.log"))
    raise RuntimeError(f"the SLURM node is {state!r}, not idle, after {timeout_s} s:\n{logs}")


def _alive(pid: int) -> bool:
    """True while `pid` runs; an exited daemon that nobody has reaped yet (a zombie) counts as stopped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stop(root: Path, timeout_s: float = 15) -> None:
    # In reverse order of starting: slurmd, slurmctld, then munged that both of them use.
    for daemon in reversed(DAEMONS):
        pid_file = root / f"{daemon}.pid"
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)


@contextmanager
def slurm_cluster() -> Iterator[dict[str, str]]:
    """Start the cluster; yield the environment that points sbatch, squeue etc. at it."""
    # Not under pytest's tmp_path: munged wants every folder above its socket open to all users.
    root = Path(tempfile.mkdtemp(prefix="slurm-"))
    root.chmod(0o755)
    for folder in ("state", "spool", "log"):
        (root / folder).mkdir()
    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    controller_port = _free_port()
    conf.write_text(_slurm_conf(root, node, controller_port))
    (root / "gres.conf").write_text(f"NodeName={node} Name=gpu File=/dev/null\n")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONF.unlink(missing_ok=True)  # only a dangling link of a killed run gets here (why_unavailable)
    SYSTEM_CONF.symlink_to(conf)
    try:
        _start_munge(root)
        _start([SBIN / "slurmctld", "-i"], root, env)
        _start([SBIN / "slurmd"], root, env)
        _wait_for_idle_node(env, root)
        yield env
    finally:
        _stop(root)
        SYSTEM_CONF.unlink()
        shutil.rmtree(root, ignore_errors=True)
