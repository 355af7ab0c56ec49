"""Open report-snapshots' page in a real browser and check it shows the JSON.

    check_report_page.py REPORT.html REPORT.json SCREENSHOT.png

A chromium, headless, driven by Playwright: `CHROMIUM` if set, else
Debian's `chromium` on the PATH, else Playwright's own Chromium (what
scripts/venv.sh installs without root):
the page must render with no request leaving it (self-contained), each
coverage bar's drawn width must be in proportion to the JSON's count, each
policy's cost bar to its monthly cost, the headline figures must read as
the JSON says, every volume timeline must draw one dot per priced
snapshot and name the volume by its Name, and the date axis must start and
end under the first and last snapshot. Then a full-page screenshot. Exit status 0 when all holds; each
failed check is printed.

Run by tests/tests/report_snapshots_moto.rs and by `make demo` (the year's
report).
"""

import json
import os
import shutil
import sys
from collections import defaultdict

from playwright.sync_api import sync_playwright

# None: Playwright's own Chromium.
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def close(a, b, tolerance=1.0):  # type: ignore[no-untyped-def]
    return abs(a - b) <= tolerance


def check(page, report):  # type: ignore[no-untyped-def]
    problems = []

    def expect(ok, what):  # type: ignore[no-untyped-def]
        if not ok:
            problems.append(what)

    # Coverage: widths proportional to counts (the longest bar is 360 px).
    counts = report["by_cover"]
    top = max(list(counts.values()) + [1])
    for bar in page.locator("svg#coverage rect").all():
        cover = bar.get_attribute("data-cover")
        box = bar.bounding_box()
        want = counts.get(cover, 0) / top * 360
        expect(box is not None and close(box["width"], want), f"coverage bar {cover}: {box} vs {want:.1f} px")
        shown = int(bar.get_attribute("data-count"))
        expect(shown == counts.get(cover, 0), f"coverage {cover}: page {shown}, JSON {counts.get(cover, 0)}")

    # Cost per policy: bars in proportion to the JSON's monthly cost.
    cost = report["cost"]
    per_policy = defaultdict(float)
    for volume in cost["volumes"]:
        per_policy[volume["policy"]] += volume["monthly_usd"]
    top = max(list(per_policy.values()) + [0.0])
    bars = page.locator("svg#cost rect").all()
    expect(len(bars) == len(per_policy), f"cost bars: {len(bars)} for {len(per_policy)} policies")
    for bar in bars:
        policy = bar.get_attribute("data-policy")
        box = bar.bounding_box()
        want = per_policy.get(policy, 0.0) / top * 360 if top > 0 else 0.0
        # A zero-width rect has no box.
        width = box["width"] if box else 0.0
        expect(close(width, want), f"cost bar {policy}: {width:.1f} vs {want:.1f} px")

    # The headline figures, as the JSON has them.
    expect(page.locator("#volumes").inner_text() == str(report["volumes"]), "volume count")
    expect(page.locator("#snapshots").inner_text() == str(cost["snapshots"]), "snapshot count")
    expect(page.locator("#monthly-usd").inner_text() == f"{cost['monthly_usd']:.2f}", "monthly cost")
    gib = (cost["standard_bytes"] + cost["archive_bytes"]) / 2**30
    expect(page.locator("#stored-gib").inner_text() == f"{gib:.2f}", "stored GiB")

    # Timelines: one dot per priced snapshot of each volume drawn, each
    # volume by its Name where it has one.
    by_volume = {(v["volume_id"]): len(v.get("snapshots", [])) for v in cost["volumes"]}
    names = {c["volume_id"]: c["name"] for c in report.get("coverage", []) if c.get("name")}
    rows = page.locator("svg#timelines g[data-volume]").all()
    expect(len(rows) == min(40, len(by_volume)), f"timelines: {len(rows)} rows for {len(by_volume)} volumes")
    drawn_times = []
    for row in rows:
        volume = row.get_attribute("data-volume")
        dots = row.locator(".snapshot").count()
        expect(dots == by_volume.get(volume), f"timeline {volume}: {dots} dots, JSON {by_volume.get(volume)}")
        visible = [c.bounding_box() for c in row.locator(".snapshot").all()[:3]]
        expect(all(b and b["width"] > 0 for b in visible), f"timeline {volume}: dots not drawn")
        label = row.locator("text").first.text_content() or ""
        if volume in names:
            expect(names[volume][:20] in label, f"timeline {volume}: labelled {label!r}, its Name is {names[volume]!r}")
        drawn_times += [s["time"] for v in cost["volumes"] if v["volume_id"] == volume for s in v.get("snapshots", [])]

    # The date axis: its first and last labels are the first and last
    # drawn snapshots' days, each under that snapshot's dot.
    ticks = page.locator("svg#timelines #axis text.tick").all()
    if drawn_times:
        expect(len(ticks) >= 1, "no date axis under the timelines")
        first, last = min(drawn_times), max(drawn_times)
        if ticks:
            expect(ticks[0].text_content() == first[:10], f"axis starts {ticks[0].text_content()}, first snapshot {first}")
            expect(ticks[-1].text_content() == last[:10], f"axis ends {ticks[-1].text_content()}, last snapshot {last}")
            xs = [b["x"] + b["width"] / 2 for b in (d.bounding_box() for d in page.locator("svg#timelines .snapshot").all()) if b]
            centre = lambda t: (lambda b: b["x"] + b["width"] / 2)(t.bounding_box())  # noqa: E731
            expect(close(centre(ticks[0]), min(xs), 2.0), f"axis start at {centre(ticks[0]):.1f} px, first dot at {min(xs):.1f}")
            expect(close(centre(ticks[-1]), max(xs), 2.0), f"axis end at {centre(ticks[-1]):.1f} px, last dot at {max(xs):.1f}")
    return problems


def main(html_path, json_path, screenshot):  # type: ignore[no-untyped-def]
    with open(json_path) as f:
        report = json.load(f)
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"file://{html_path}")
        problems = check(page, report)
        outside = [u for u in requests if not u.startswith("file://")]
        if outside:
            problems.append(f"the page asked for {outside}")
        page.screenshot(path=screenshot, full_page=True)
        browser.close()
    for problem in problems:
        print(f"report page: {problem}")
    print(f"report page: {len(problems)} problems; screenshot {screenshot}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
