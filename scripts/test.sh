#!/usr/bin/env bash
# Set up a virtual environment and run the whole test suite: lint, types, unit and
# integration tests (real nats-server processes, sshd, Slurm, Podman), the whole CWL conformance suite.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints.txt -e '.[test]'
# sshd, Slurm and Podman for the connector tests (as root with apt-get; skipped otherwise)
bash scripts/install-backends.sh

echo "== ruff"
ruff check .
echo "== mypy (strict)"
mypy
echo "== pytest"
python -m pytest -q -p no:cacheprovider "$@"
