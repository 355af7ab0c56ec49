"""Turn restic's own `forget` test data into this project's fixture.

restic checks its policy code (internal/data/snapshot_policy.go) against
golden files: one list of snapshots (in snapshot_policy_test.go), a list of
policies, and for each policy the snapshots kept and why
(internal/data/testdata/policy_keep_snapshots_<n>). This script reads those
from a restic checkout and writes shared/core/tests/fixtures/restic-forget.json,
which shared/core/tests/restic_forget.rs runs through the planner. Only data
is carried over: times, tags, policies, what was kept and the reasons.

    python3 scripts/restic_forget_cases.py <restic git dir or work tree> [commit]

Reads with `git show <commit>:<path>`, so a bare repository works.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "shared/core/tests/fixtures/restic-forget.json"
TEST = "internal/data/snapshot_policy_test.go"
GOLDEN = "internal/data/testdata/policy_keep_snapshots_{}"


def show(repo: str, commit: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", repo, "show", f"{commit}:{path}"],
                          check=True, capture_output=True, text=True).stdout


def strings(text: str | None) -> list[str]:
    return re.findall(r'"([^"]*)"', text or "")


def parse_time(text: str) -> datetime.datetime:
    text = text.replace("T", " ").rstrip("Z")
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)


def iso(t: datetime.datetime) -> str:
    return t.isoformat(timespec="milliseconds" if t.microsecond else "seconds").replace("+00:00", "Z")


def snapshots(source: str) -> list[dict]:
    block = source[source.index("var testExpireSnapshots = data.Snapshots{"):]
    block = block[:block.index("\n\t}\n")]
    out = []
    for m in re.finditer(r'\{Time: parseTimeUTC\("([^"]+)"\)(?:, Tags: \[\]string\{([^}]*)\})?(?:, Paths: \[\]string\{([^}]*)\})?\}', block):
        out.append({"time": iso(parse_time(m.group(1))), "tags": strings(m.group(2)), "paths": strings(m.group(3))})
    return out


FIELDS = {"Last": "last", "Hourly": "hourly", "Daily": "daily", "Weekly": "weekly", "Monthly": "monthly",
          "Yearly": "yearly", "Within": "within", "WithinHourly": "within_hourly", "WithinDaily": "within_daily",
          "WithinWeekly": "within_weekly", "WithinMonthly": "within_monthly", "WithinYearly": "within_yearly"}


def policies(source: str) -> list[dict]:
    block = source[source.index("var tests = []data.ExpirePolicy{") + len("var tests = []data.ExpirePolicy{"):]
    # Top-level entries: balanced braces.
    out, depth, start = [], 0, None
    for i, c in enumerate(block):
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}":
            if depth == 0:
                break
            depth -= 1
            if depth == 0:
                out.append(block[start + 1:i])
    result = []
    for entry in out:
        policy: dict = {}
        for name, value in re.findall(r"(\w+):\s*(-?\d+|data\.ParseDurationOrPanic\(\"[^\"]+\"\))", entry):
            if name in FIELDS:
                policy[FIELDS[name]] = int(value) if value.lstrip("-").isdigit() else strings(value)[0]
        tags = re.search(r"Tags: \[\]data\.TagList\{(.*)\}", entry)
        if tags:
            policy["tags"] = [strings(group) for group in re.findall(r"\{([^}]*)\}", tags.group(1))]
        result.append(policy)
    return result


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    repo = sys.argv[1]
    if (Path(repo) / ".git").exists():
        repo = str(Path(repo) / ".git")
    commit = sys.argv[2] if len(sys.argv) > 2 else "HEAD"
    commit = subprocess.run(["git", "--git-dir", repo, "rev-parse", commit],
                            check=True, capture_output=True, text=True).stdout.strip()
    source = show(repo, commit, TEST)
    snaps = snapshots(source)
    # restic sorts newest first, stable: equal times keep their input order.
    order = sorted(range(len(snaps)), key=lambda i: parse_time(snaps[i]["time"]), reverse=True)
    cases = []
    for n, policy in enumerate(policies(source)):
        golden = json.loads(show(repo, commit, GOLDEN.format(n)))
        used: set[int] = set()
        keep, reasons = [], []
        for kept, reason in zip(golden.get("keep") or [], golden.get("reasons") or []):
            key = (parse_time(kept["time"]), kept.get("tags") or [], kept.get("paths") or [])
            index = next(i for i in order if i not in used
                         and (parse_time(snaps[i]["time"]), snaps[i]["tags"], snaps[i]["paths"]) == key)
            used.add(index)
            keep.append(index)
            reasons.append(reason["matches"])
        cases.append({"policy": policy, "keep": keep, "reasons": reasons})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "source": f"restic/restic {TEST} and {GOLDEN.format('<n>')}",
        "restic_commit": commit,
        "generated_by": "scripts/restic_forget_cases.py",
        "snapshots": snaps,
        "cases": cases,
    }, indent=1) + "\n")
    print(f"{OUT.relative_to(ROOT)}: {len(snaps)} snapshots, {len(cases)} cases, restic {commit[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
