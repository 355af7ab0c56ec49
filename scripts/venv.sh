#!/usr/bin/env bash
# Create (or refresh) the project-local virtualenvs with the pinned Python
# tools: ./.venv from requirements-dev.txt (moto, cfn-lint, sam, cargo-lambda,
# zig, time-machine) and ./.venv-checkov from requirements-checkov.txt
# (checkov pins a boto3 that sam cannot share). Idempotent: a virtualenv whose
# stamp file is newer than its requirements is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

make_venv() {
    local venv=$1 requirements=$2
    local stamp="$venv/.installed"
    if [[ -f "$stamp" && "$stamp" -nt "$requirements" ]]; then
        return 0
    fi
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    touch "$stamp"
    echo "$venv ready from $requirements"
}

make_venv .venv requirements-dev.txt
make_venv .venv-checkov requirements-checkov.txt
