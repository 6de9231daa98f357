"""A single-node SLURM cluster for tests: Debian's slurmctld and slurmd, started and stopped by the test.

Both daemons run in the foreground as children of the test, on loopback ports of their own, with their
configuration, state, spool and logs in a temporary directory, so several clusters (or a real one) can
coexist on a machine. Authentication is ``auth/none`` (no munge daemon); there is no accounting
database, so ``sacct`` answers that accounting is disabled (submitit then follows its jobs by their result
files, which it does anyway). Two partitions: ``low`` (the default) whose jobs ``high`` preempts, with
``PreemptMode=REQUEUE``, as a cluster with preemptible partitions has them. Without a grace time (SLURM's
default GraceTime=0) a preemption happens as soon as the preemptor is submitted: the job gets SIGTERM,
then SIGKILL after ``KillWait`` (3 s here, 30 s by default), and is requeued. (With a grace time SLURM
preempts at its next scheduling pass after the grace, which took 10 s and more here.)

Install the packages with ``scripts/install-slurm.sh`` (Debian, as root; CI does this).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psutil

DAEMONS = ('slurmctld', 'slurmd', 'sbatch', 'squeue', 'scancel', 'scontrol', 'sinfo')
NODE = 'legion0'


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    absent = [name for name in DAEMONS if shutil.which(name) is None]
    if absent:
        return f'{", ".join(absent)} not installed (scripts/install-slurm.sh installs Debian\'s slurm-wlm)'
    if os.geteuid() != 0:
        return 'slurmd must run as root to start jobs'
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class SingleNodeSlurm:
    """``with SingleNodeSlurm(tmp_path) as cluster:`` a controller and one node with ``cpus`` CPUs."""

    def __init__(self, root: Path, cpus: int = 2, grace_s: int = 0, kill_wait_s: int = 3):
        self.root = Path(root)
        self.cpus, self.grace_s, self.kill_wait_s = cpus, grace_s, kill_wait_s
        self.conf = self.root / 'slurm.conf'
        self.env = {**os.environ, 'SLURM_CONF': str(self.conf)}
        self._daemons: list[subprocess.Popen] = []

    def _write_conf(self) -> None:
        host = socket.gethostname().split('.')[0]
        for sub in ('state', 'spool', 'log'):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        r = self.root
        self.conf.write_text(f"""\
ClusterName=legiontest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
KillWait={self.kill_wait_s}
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=2048 State=UNKNOWN
PartitionName=low Nodes={NODE} Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime={self.grace_s}
PartitionName=high Nodes={NODE} MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
""")

    def __enter__(self) -> SingleNodeSlurm:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout_s: float = 60.0) -> None:
        self._write_conf()
        logs = self.root / 'log'
        for argv, name in (([shutil.which('slurmctld'), '-D', '-i', '-f', str(self.conf)], 'slurmctld'),
                           ([shutil.which('slurmd'), '-D', '-N', NODE, '-f', str(self.conf)], 'slurmd')):
            out = open(logs / f'{name}.out', 'w')  # noqa: SIM115 - closed with the process
            self._daemons.append(subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL))
            out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for daemon in self._daemons:
                if daemon.poll() is not None:
                    self.stop()
                    raise RuntimeError(f'{daemon.args[0]} exited with {daemon.returncode}:\n{self.logs()}')
            state = self.run(['sinfo', '-h', '-n', NODE, '-o', '%T'], check=False).stdout.strip()
            if state == 'idle':
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f'the SLURM node did not come up within {timeout_s:.0f} s:\n{self.logs()}')

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=check, timeout=30)

    def jobs(self) -> dict[str, dict[str, str]]:
        """Every job the controller knows (running, pending and recently ended): id -> scontrol fields."""
        out = self.run(['scontrol', '-o', 'show', 'job'], check=False).stdout
        jobs = {}
        for line in out.splitlines():
            fields = dict(item.split('=', 1) for item in line.split() if '=' in item)
            if 'JobId' in fields:
                array = fields.get('ArrayTaskId')
                key = f'{fields["ArrayJobId"]}_{array}' if array and array != 'N/A' else fields['JobId']
                jobs[key] = fields
        return jobs

    def logs(self) -> str:
        parts = []
        for path in sorted((self.root / 'log').glob('*')):
            lines = path.read_text(errors='replace').splitlines()[-30:]
            parts.append(f'== {path.name}\n' + '\n'.join(lines))
        return '\n'.join(parts)

    def step_daemons(self) -> list[psutil.Process]:
        """This cluster's slurmstepd processes (one per job step; they detach from slurmd), known by the
        files of this cluster they hold open (slurmd's log, the job's output)."""
        found = []
        for proc in psutil.process_iter(['name']):
            try:
                if proc.info['name'] == 'slurmstepd' and any(
                        f.path.startswith(str(self.root)) for f in proc.open_files()):
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def stop(self, timeout_s: float = 30.0) -> None:
        """Cancel every job, wait for them and their step daemons to end, then stop both daemons.

        A slurmstepd whose job was cancelled reports the end to slurmd and slurmctld; with them gone
        first it waits for them for good (measured), so it is waited for, and killed past the timeout."""
        deadline = time.monotonic() + timeout_s
        if any(d.poll() is None for d in self._daemons):
            self.run(['scancel', '--full', '--user', str(os.geteuid())], check=False)
            while time.monotonic() < deadline:
                if not self.run(['squeue', '-h', '-o', '%i'], check=False).stdout.strip() \
                        and not self.step_daemons():
                    break
                time.sleep(0.5)
        for proc in self.step_daemons():
            proc.kill()
        for daemon in reversed(self._daemons):
            if daemon.poll() is None:
                daemon.terminate()
                try:
                    daemon.wait(10)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
        self._daemons.clear()
