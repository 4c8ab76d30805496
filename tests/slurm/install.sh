#!/usr/bin/env bash
# Install a single-node SLURM (Debian packages) + munge for the test cluster.
# Idempotent: does nothing (beyond a dpkg query) when everything is installed.
# Usage: sudo tests/slurm/install.sh        (must run as root)
set -euo pipefail

PKGS=(slurmctld slurmd munge slurm-client)
start=$(date +%s)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install.sh: all of ${PKGS[*]} already installed"
else
  if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: must run as root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # apt-get update only if the package lists are missing or older than a day.
  if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1) ]]; then
    echo "install.sh: apt-get update"
    apt-get update -q
  fi
  echo "install.sh: apt-get install -y ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${PKGS[@]}"
fi

# The package normally creates the munge key; make sure one exists.
if [[ ! -s /etc/munge/munge.key ]]; then
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile=/etc/munge/munge.key
  else
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi

for b in slurmctld slurmd sinfo squeue sbatch munged; do
  command -v "$b" >/dev/null || { echo "install.sh: $b not on PATH after install" >&2; exit 1; }
done
echo "install.sh: $(slurmctld -V) / $(munged --version 2>&1 | head -n1)"
echo "install.sh: done in $(( $(date +%s) - start )) s"
