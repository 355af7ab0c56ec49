"""Figures of the code's shape (issue 38's before/after), from the sources alone.

    python3 scripts/code_figures.py lengths [DIR...]   # functions over 60/80 lines, median, p90, longest
    python3 scripts/code_figures.py pub CRATE_SRC OTHER_DIR...
        # top-level `pub` items of a crate that no other crate names (candidates for pub(crate))

`lengths` counts a `fn` item from its line to its closing brace, outside
`#[cfg(test)]` modules and `tests/` directories (TOP=N lists the N longest).
`pub` compares names as words: a type used in another crate's source by name
stays `pub`; the compiler then says which of the rest must stay public
(types in public signatures and summaries).
"""

import os
import re
import statistics
import sys

FN = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)')
ITEM = re.compile(r'^pub (?:async )?(fn|struct|enum|const|trait|type|static) ([A-Za-z_][A-Za-z0-9_]*)')


def rust_files(root):
    for d, _, files in os.walk(root):
        if '/target' in d or '/tests' in d or d.endswith('/tests'):
            continue
        for f in files:
            if f.endswith('.rs'):
                yield os.path.join(d, f)


def lengths(roots):
    rows = []
    for root in roots:
        for path in rust_files(root):
            lines = open(path).read().split('\n')
            end = next((i for i, l in enumerate(lines) if l.startswith('#[cfg(test)]')), len(lines))
            for i in range(end):
                m = FN.match(lines[i])
                if not m or lines[i].rstrip().endswith(';'):
                    continue
                depth, started, j = 0, False, i
                while j < end:
                    for ch in lines[j]:
                        if ch == '{':
                            depth, started = depth + 1, True
                        elif ch == '}':
                            depth -= 1
                    if started and depth == 0:
                        break
                    if not started and lines[j].rstrip().endswith(';'):
                        break
                    j += 1
                if started:
                    rows.append((j - i + 1, path, m.group(6)))
    rows.sort(reverse=True)
    n = sorted(r[0] for r in rows)
    print(f"functions: {len(n)}, over 60: {sum(x > 60 for x in n)}, over 80: {sum(x > 80 for x in n)}, "
          f"median {statistics.median(n)}, p90 {n[int(len(n) * 0.9)]}")
    for r in rows[:int(os.environ.get('TOP', '15'))]:
        print(*r)


def public(src, others):
    text = "\n".join(open(p).read() for d in others for p in rust_files(d))
    words = set(re.findall(r'[A-Za-z_][A-Za-z0-9_]*', text))
    for path in sorted(rust_files(src)):
        for i, line in enumerate(open(path).read().split('\n')):
            m = ITEM.match(line)
            if m and m.group(2) not in words:
                print(f"{path}:{i + 1}:{m.group(1)} {m.group(2)}")


if __name__ == '__main__':
    if len(sys.argv) < 2 or sys.argv[1] not in ('lengths', 'pub'):
        sys.exit(__doc__)
    if sys.argv[1] == 'lengths':
        lengths(sys.argv[2:] or ['shared', 'functions', 'cli'])
    else:
        public(sys.argv[2], sys.argv[3:])
