#!/usr/bin/env bash
# make package: build the Lambda zips (one per function of template.yaml)
# the way `sam deploy` ships them, and print each one's size and its start
# to ready.
#
# `sam build` runs cargo-lambda (BuildMethod rust-cargolambda) for each
# function; cargo-lambda cross-links with zig. Both come pinned from PyPI into
# ./.venv, so nothing but Rust and Python is needed on the machine.
#
# ARCH defaults to x86_64 because only that Rust target is installed on the
# project's build machines; users with the aarch64 target installed
# (`rustup target add aarch64-unknown-linux-gnu`) run `ARCH=arm64 make package`,
# which matches the template's default architecture.
set -euo pipefail
cd "$(dirname "$0")/.."

arch="${ARCH:-x86_64}"
export PATH="$PWD/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# sam build reads no AWS resources, but boto3 wants a region to exist.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

start=$(date +%s)
sam build --parameter-overrides "Architecture=$arch"
elapsed=$(( $(date +%s) - start ))

python3 - "$arch" "$elapsed" <<'PY'
import os, sys, zipfile
arch, elapsed = sys.argv[1], int(sys.argv[2])
build, out = ".aws-sam/build", ".aws-sam/zips"
os.makedirs(out, exist_ok=True)
functions = sorted(d for d in os.listdir(build) if d.endswith("Function"))
# As many as template.yaml builds (one `Binary:` each; sam builds the
# vault's too, whatever its condition).
with open("template.yaml") as t:
    expected = sum(1 for line in t if line.strip().startswith("Binary: "))
if len(functions) != expected:
    sys.exit(f"expected {expected} functions in {build}, found {functions}")
print(f"\n{'function':<28}{'bootstrap':>12}{'zipped':>12}   ({arch}, sam build {elapsed} s)")
for name in functions:
    binary = os.path.join(build, name, "bootstrap")
    target = os.path.join(out, f"{name}.zip")
    # Lambda runs bootstrap from the zip root; it must be executable.
    info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(binary, "rb") as f, zipfile.ZipFile(target, "w") as z:
        z.writestr(info, f.read(), compresslevel=9)
    mib = lambda n: f"{n / 1048576:.1f} MiB"
    print(f"{name:<28}{mib(os.path.getsize(binary)):>12}{mib(os.path.getsize(target)):>12}")
print(f"zips in {out}/")
# make deploy deploys what was built, as what it was built for.
with open(os.path.join(".aws-sam", "build-architecture"), "w") as f:
    f.write(arch + "\n")
PY

# Each function's start to ready (Lambda's init phase: logging,
# configuration, SDK clients), where this machine can run what was built.
case "$arch/$(uname -m)" in
  x86_64/x86_64|arm64/aarch64) python3 scripts/bench_functions.py --starts-only ;;
  *) echo "start to ready: not measured ($arch binaries on a $(uname -m) machine)" ;;
esac
