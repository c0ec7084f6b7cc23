#!/usr/bin/env bash
# Install the real execution back-ends the connector tests start by themselves: OpenSSH's
# sshd, single-node Slurm (+ the PBS-style qsub/qstat wrappers), rootful Podman, and Chromium
# (+ chromium-driver) for the UI's browser tests (Playwright drives /usr/bin/chromium).
# Runs only as root on a Debian-like machine with apt-get; elsewhere it says what it skipped
# and the tests that need a missing back-end skip with that reason.
# Usage: bash scripts/install-backends.sh
set -euo pipefail

PACKAGES=(openssh-server openssh-client slurmctld slurmd slurm-client slurm-wlm-torque munge
          podman runc busybox-static chromium chromium-driver)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "back-ends: all installed"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "back-ends: not installing ${missing[*]} (needs root and apt-get); their tests will skip" >&2
  exit 0
fi
echo "back-ends: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
