#!/usr/bin/env bash
# Create (or refresh) the project-local virtualenv in ./.venv with the pinned
# Python tools from requirements-dev.txt. Idempotent: does nothing when the
# stamp file is newer than the requirements.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp="$venv/.installed"
if [[ -f "$stamp" && "$stamp" -nt requirements-dev.txt ]]; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
touch "$stamp"
echo "venv ready: $("$venv/bin/python" --version), $("$venv/bin/moto_server" --version 2>/dev/null || echo moto), $("$venv/bin/cfn-lint" --version)"
