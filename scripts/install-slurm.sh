#!/usr/bin/env bash
# Debian's SLURM (slurmctld, slurmd and the client commands) for the single-node cluster that the sweep
# test starts and stops itself (src/legion_core/test/slurm_cluster.py); CI runs this before the tests.
# Idempotent: with the commands present it installs nothing. Needs root and Debian's package archive.
# No daemon is started or enabled here, and no system-wide slurm.conf is written.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-slurm: apt-get needs root; as root: apt-get install slurmctld slurmd slurm-client" >&2
  exit 1
fi
echo "install-slurm: installing Debian's slurmctld, slurmd, slurm-client" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client >/dev/null
