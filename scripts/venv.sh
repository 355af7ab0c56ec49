#!/usr/bin/env bash
# Create (or refresh) the project-local virtualenvs with the pinned Python
# tools: ./.venv from requirements-dev.txt (moto, cfn-lint, sam, cargo-lambda,
# zig, time-machine, playwright) and ./.venv-checkov from requirements-checkov.txt
# (checkov pins a boto3 that sam cannot share). Idempotent: a virtualenv whose
# stamp file is newer than its requirements is left alone. Also Debian's
# chromium, when it is missing (the report page's browser test).
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

# A chromium for the test that opens the report page in a real browser
# (Playwright drives it): $CHROMIUM if set, Debian's `chromium` (installed
# with apt-get as root or through sudo), else, without root, Playwright's
# own Chromium in ~/.cache/ms-playwright (scripts/check_report_page.py
# takes it when no other is found).
install_chromium() {
    if [[ -n "${CHROMIUM:-}" ]] || command -v chromium >/dev/null 2>&1; then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]] && ! sudo -n true >/dev/null 2>&1; then
        echo "no chromium and no root: installing Playwright's own Chromium (no root needed)"
        .venv/bin/python -m playwright install chromium
        return 0
    fi
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q chromium >/dev/null \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; }
    echo "chromium installed: $(chromium --version)"
}

make_venv .venv requirements-dev.txt
make_venv .venv-checkov requirements-checkov.txt
install_chromium
