#!/usr/bin/env bash
# Debian's SLURM (slurmctld, slurmd and the client commands) for the single-node cluster that the sweep
# test starts and stops itself (src/legion_core/test/slurm_cluster.py); CI runs this before the tests.
# Idempotent: with the commands present it installs nothing. Needs root and Debian's package archive.
# No daemon is started here, and no system-wide slurm.conf is written.
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
# The packages would start their (unconfigured) services, and munge's: policy-rc.d tells them not to,
# as Docker images do; one already there is left as it is.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$POLICY" && chmod +x "$POLICY"
  trap 'rm -f "$POLICY"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client >/dev/null
