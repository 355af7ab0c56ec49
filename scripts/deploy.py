"""make deploy / make validate: deploy what make package built, without the traps.

- The architecture is the one `make package` built (`.aws-sam/build-architecture`),
  never the template's default by accident: a zip of x86_64 binaries deployed as
  arm64 functions would not start.
- The parameters are samconfig.toml's (`[default.deploy.parameters]
  parameter_overrides`), DryRun included, with Architecture and (with
  `--policies FILE`) Policies set: sam replaces the whole list when
  `--parameter-overrides` is given, so a one-off override would otherwise drop
  DryRun=false and every other choice.
- The policy document is checked before anything is deployed, by
  `ebs-lifecycle validate` (the functions' own parser and error text): a typo
  fails here, not in every function after the deploy.

Usage:
  deploy.py [--policies FILE] [--config samconfig.toml] [--print] [-- sam deploy args...]
  deploy.py --validate-only --policies FILE
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quoted(value: str) -> str:
    """A value as sam's --parameter-overrides parser reads it back whole."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_config(path: Path) -> dict:
    """samconfig.toml, or nothing when there is none."""
    if not path.exists():
        return {}
    with path.open("rb") as f:
        return tomllib.load(f)


def section(config: dict, command: str) -> dict:
    return config.get("default", {}).get(command, {}).get("parameters", {})


def overrides_of(config: dict) -> dict[str, str]:
    """samconfig.toml's deploy parameter_overrides, in order."""
    raw = section(config, "deploy").get("parameter_overrides", [])
    if isinstance(raw, str):
        from samcli.cli.types import CfnParameterOverridesType

        return dict(CfnParameterOverridesType().convert(raw, None, None))
    out = {}
    for item in raw:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def validator() -> list[str]:
    """The command that checks a policy document as the functions do."""
    given = os.environ.get("EBS_LIFECYCLE_BIN")
    if given:
        return [given]
    for profile in ("release", "debug"):
        binary = ROOT / "target" / profile / "ebs-lifecycle"
        if binary.exists():
            return [str(binary)]
    return ["cargo", "run", "--quiet", "-p", "ebs-lifecycle-cli", "--"]


def validate(document: str, stack: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(document)
        path = f.name
    try:
        done = subprocess.run(validator() + ["--stack", stack, "validate", path], capture_output=True, text=True)
    finally:
        os.unlink(path)
    if done.returncode != 0:
        sys.exit(f"the policy document is refused, nothing deployed: {done.stderr.strip()}")
    print(done.stdout.strip().replace(path, "the policy document"), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policies", type=Path, help="the policy document (JSON) to deploy as Policies")
    parser.add_argument("--config", type=Path, default=ROOT / "samconfig.toml")
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam", help="where make package built")
    parser.add_argument("--print", action="store_true", help="print the parameters as sam would get them; deploy nothing")
    parser.add_argument("--validate-only", action="store_true")
    parser.add_argument("sam_args", nargs="*", help="more `sam deploy` arguments (after --)")
    args = parser.parse_args()

    config = read_config(args.config)
    stack = section(config, "global").get("stack_name", "ebs-snapshot-lifecycle")

    if args.validate_only:
        if not args.policies:
            sys.exit("give the policy document: make validate POLICIES=<file>")
        validate(args.policies.read_text(), stack)
        return

    arch_file = args.build_dir / "build-architecture"
    if not arch_file.exists():
        sys.exit("nothing built to deploy: run `make package` first (it records the architecture it built)")
    arch = arch_file.read_text().strip()
    overrides = overrides_of(config)
    if args.policies:
        document = args.policies.read_text()
        validate(document, stack)
        overrides["Policies"] = json.dumps(json.loads(document), separators=(",", ":"))
    elif overrides.get("Policies"):
        validate(overrides["Policies"], stack)
    overrides["Architecture"] = arch
    if overrides.get("DryRun", "true").lower() != "false":
        print("DryRun=true: expiry will report what it would delete and delete nothing "
              "(set DryRun=false in samconfig.toml's parameter_overrides when the plan is right)", file=sys.stderr)
    line = " ".join(f"{k}={quoted(v)}" for k, v in overrides.items())
    if args.print:
        print(json.dumps({"overrides": overrides, "line": line}))
        return
    sam = ROOT / ".venv" / "bin" / "sam"
    command = [str(sam), "deploy", "--config-file", str(args.config), "--parameter-overrides", line] + args.sam_args
    print(f"$ sam deploy --parameter-overrides ... Architecture={arch} " + " ".join(args.sam_args), file=sys.stderr)
    sys.exit(subprocess.run(command, cwd=ROOT).returncode)


if __name__ == "__main__":
    main()
