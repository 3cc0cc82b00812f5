"""The results page in a real browser: headless Chromium (Debian's `chromium`, which
scripts/setup-host installs) opens the page from a file, offline.

- the screenshot at 1280x800 is not blank and shows the claims grid (its verdict badges'
  colours, its header's);
- the DOM Chromium built (--dump-dom) holds every claim's verdict for every side;
- the browser requested nothing from the network for the page: every name lookup is mapped to
  a failure (--host-resolver-rules), and the browser's own network log (--log-net-log) is read
  for every URL request and name lookup made on the page's behalf (its initiator is the page's
  origin, its isolation key the file:// site). The browser's own background requests (update
  checks, which start whatever page is open) are told apart by that attribution; a control page
  that does reference the network shows the check finds what it looks for.

No daemon is needed; where no Chromium is installed the tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from explorer.output import page
from tests.unit.documents import DOCUMENTS, document, expected_grid, grid_verdicts, judged, six_sides

BROWSERS = ("chromium", "google-chrome", "google-chrome-stable", "chromium-browser")
CHROMIUM = next((path for path in map(shutil.which, BROWSERS) if path), None)
TIMEOUT_S = 60
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason=f"no headless browser ({', '.join(BROWSERS)}); scripts/setup-host installs chromium"
)
# colours of the page's stylesheet (explorer/output/markup.py) that only the grid shows at the top
BADGE_COLOURS = {"#dcf2e3", "#fbe0de", "#ffefc2", "#e6e6e6"}
HEADER_COLOUR = "#e9ecf0"
A4_CONTENT_PX = 703  # 210 mm less the print stylesheet's 12 mm margins, at 96 px per inch
# Appended to a copy of a page: what runs off its right edge, written into the DOM it dumps.
OVERFLOW_PROBE = """<script>
var wide = [];
document.querySelectorAll("body *").forEach(function (e) {
  if (e.getBoundingClientRect().right > document.documentElement.clientWidth + 1) wide.push(e.tagName + "." + e.className);
});
document.body.insertAdjacentHTML("beforeend", '<pre id="overflow">' + wide.slice(0, 10).join(" ") + "</pre>");
</script>"""


class Visit:
    """One headless Chromium run on a page file: its screenshot, its DOM, its network log."""

    def __init__(self, html: Path, work: Path, width: int = 1280) -> None:
        self.screenshot, self.netlog = work / "shot.png", work / "netlog.json"
        argv = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",  # as root, Chromium's sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={work / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # every name lookup fails: nothing can leave
            f"--log-net-log={self.netlog}",
            f"--window-size={width},800",
            f"--screenshot={self.screenshot}",
            "--dump-dom",
            html.as_uri(),
        ]
        # its own session: on a timeout the browser and every process it started are ended
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            self.dom, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"Chromium did not finish within {TIMEOUT_S} s on {html}")
        assert proc.returncode == 0, f"Chromium failed ({proc.returncode}): {err[-2000:]}"

    def page_requests(self) -> list[str]:
        """Every URL requested and every name looked up on the page's behalf."""
        log = json.loads(self.netlog.read_text())
        kinds = log["constants"]["logEventTypes"]
        found = []
        for event in log["events"]:
            params: dict[str, Any] = event.get("params") or {}
            if event["type"] == kinds["URL_REQUEST_START_JOB"] and "url" in params:
                if params.get("initiator") != "not an origin" or "file://" in params.get("network_isolation_key", ""):
                    found.append(params["url"])
            elif event["type"] == kinds["HOST_RESOLVER_MANAGER_REQUEST"] and "host" in params:
                page_s = "file://" in params.get("network_anonymization_key", "")
                found += [f"name lookup {params['host']}"] if page_s else []
        return found

    def colours(self) -> dict[str, int]:
        """'#rrggbb' -> pixels of that colour in the screenshot."""
        import numpy as np
        from matplotlib.image import imread

        pixels = (imread(self.screenshot)[:, :, :3] * 255).round().astype(np.uint32)
        packed = pixels[:, :, 0] << 16 | pixels[:, :, 1] << 8 | pixels[:, :, 2]
        values, counts = np.unique(packed, return_counts=True)
        return {f"#{int(v):06x}": int(c) for v, c in zip(values, counts)}


def visit(runs: list[tuple[str, dict[str, Any]]], tmp_path: Path) -> Visit:
    html = page.write(runs, tmp_path / "page.html")
    return Visit(html, tmp_path)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_chromium_shows_the_grid_with_every_verdict_and_fetches_nothing(name: str, tmp_path: Path):
    result = judged(document(name))
    seen = visit([(name, result)], tmp_path)
    assert grid_verdicts(seen.dom) == expected_grid(result)
    colours = seen.colours()
    assert len(colours) > 50, "the screenshot is blank or nearly"
    assert sum(colours.get(c, 0) for c in BADGE_COLOURS) > 500, "no verdict badge in the first screen"
    assert colours.get(HEADER_COLOUR, 0) > 500, "no grid header in the first screen"
    assert "<svg" in seen.dom
    assert seen.page_requests() == []


def test_chromium_shows_the_compare_view_and_fetches_nothing(tmp_path: Path):
    runs = [("this host", judged(document("both.json"))), ("CI runner", judged(six_sides()))]
    seen = visit(runs, tmp_path)
    assert "2 runs compared" in seen.dom and 'class="differs"' in seen.dom
    assert grid_verdicts(seen.dom), "no claims grid in the compare view"
    assert seen.page_requests() == []


def test_the_network_check_sees_a_page_that_asks_for_the_network(tmp_path: Path):
    """A control: the same check on a page with an image, a stylesheet and a CSS url() by
    address finds each of them (they fail: every name maps to nothing)."""
    html = tmp_path / "control.html"
    html.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="http://fonts.example.org/a.css">'
        '<style>body { background: url("https://images.example.net/b.png"); }</style></head>'
        '<body><p>control</p><img src="https://example.com/x.png"></body></html>'
    )
    requested = " ".join(Visit(html, tmp_path).page_requests())
    for address in ("fonts.example.org/a.css", "images.example.net/b.png", "example.com/x.png"):
        assert address in requested


@pytest.mark.parametrize("name", ["six-sides (built)", "six-sides.json"])
@pytest.mark.parametrize(("width", "medium"), [(1280, "screen"), (A4_CONTENT_PX, "print")])
def test_nothing_runs_off_the_page_on_a_projector_or_a4(name: str, width: int, medium: str, tmp_path: Path):
    """At 1280 px, and at A4's width with the print stylesheet applied to the screen (headless
    Chromium's screenshot has no print mode), no element reaches past the right edge."""
    html = page.render([(name, judged(document(name)))])
    if medium == "print":
        html = html.replace("@media print {", "@media all {")
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", OVERFLOW_PROBE + "</body>"))
    dom = Visit(probe, tmp_path, width).dom
    wide = dom.rsplit('<pre id="overflow">', 1)[1].split("</pre>", 1)[0]  # the element, not the script
    assert wide == "", f"past the right edge at {width} px ({medium}): {wide}"


def test_the_overflow_probe_sees_what_runs_off(tmp_path: Path):
    """A control: a page with a table wider than the window is reported."""
    probe = tmp_path / "wide.html"
    probe.write_text(
        f'<html><body><table class="wide" style="width: 2000px"><tr><td>x</td></tr></table>{OVERFLOW_PROBE}</body></html>'
    )
    dom = Visit(probe, tmp_path).dom
    assert "TABLE.wide" in dom.rsplit('<pre id="overflow">', 1)[1]
