#!/usr/bin/env bash
# Re-resolve the dependencies in a throw-away venv and rewrite constraints.txt from it.
# Run after changing dependencies in pyproject.toml; then run the test suite and commit both.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3}" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q -e '.[test]'
{
  echo "# Versions the test suite and the generated docs were checked with (pip freeze of a fresh"
  echo "# 'pip install -e .[test]' on Python 3.11). scripts/test.sh and the README install with"
  echo "# '-c constraints.txt' so a fresh clone gets exactly these; refresh with scripts/refresh-constraints.sh."
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^-e '
} > constraints.txt
echo "constraints.txt refreshed"
