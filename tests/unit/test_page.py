"""The results page, read back as text: every claim's verdict for every side in the grid, no
network address anywhere, the charts as inline SVG, the result document embedded whole, the
host card and what the host sees; the compare view with its differences marked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from explorer import claims
from explorer.errors import ExplorerError
from explorer.output import figures, page
from explorer.result import Result
from tests.unit.documents import (
    DOCUMENTS,
    document,
    dumped,
    embedded,
    expected_grid,
    fixture,
    grid_verdicts,
    judged,
    network_references,
    six_sides,
    typed,
)

pytest.importorskip("matplotlib")
_PAGES: dict[str, tuple[Result, str]] = {}


def rendered(name: str) -> tuple[Result, str]:
    """(the judged document, its page), rendered once per test session."""
    if name not in _PAGES:
        result = judged(document(name))
        _PAGES[name] = (result, page.render([(name, result)]))
    return _PAGES[name]


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_grid_holds_every_claims_verdict_for_every_side(name: str):
    result, html = rendered(name)
    assert grid_verdicts(html) == expected_grid(result)
    assert len(result.claims) == len(claims.load()) == 8


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_page_names_no_network_address_and_draws_svg(name: str):
    result, html = rendered(name)
    assert network_references(html) == []
    assert "<svg" in html and "<?xml" not in html and "<!DOCTYPE svg" not in html
    assert "@media print" in html and "<style>" in html
    drawable = [c for c in figures.CHARTS if not c.missing(result)]
    assert html.count("<figure") == len(drawable) == html.count("How this figure was measured")


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_result_is_embedded_whole(name: str):
    result, html = rendered(name)
    assert embedded(html) == dumped(result)


def test_the_checks_find_what_they_look_for():
    """The network-address check is not vacuous: it finds each kind of reference."""
    bad = '<img src="https://x.org/a.png"><link href=//cdn.example/f.css><p style="background: url( \'http://a/b\')">'
    assert len(network_references(bad)) == 3
    assert network_references('<svg xmlns="http://www.w3.org/2000/svg"><use xlink:href="#g1"/></svg>') == []


def test_text_in_the_document_cannot_end_the_embedded_script():
    raw = fixture("container.json")
    raw["scenario"]["description"] = "</script><script>alert(1)</script> <!-- and a comment"
    result = judged(raw)
    html = page.render([("x", result)])
    assert html.count("</script>") == 2  # the embedded document's and the sorting script's
    assert embedded(html) == dumped(result)
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html  # shown as text in the header


def test_a_document_without_claims_is_shown_as_not_judged():
    unjudged = typed(fixture("both.json"))
    html = page.render([("both", unjudged)])
    assert "not judged" in html and grid_verdicts(html) == []
    assert embedded(html) == dumped(unjudged)


def test_the_host_card_and_the_tcg_banner():
    _, html = rendered("both.json")
    assert "VM timings measure an emulator" in html
    for fact in ("6.18.44-fc-v669", "2 × AMD EPYC", "itself a VM", "yes: its CPU flags name a hypervisor"):
        assert fact in html
    assert "Docker 20.10.24+dfsg1 (runc)" in html and "libvirt 9.0.0, QEMU 7.2.0, TCG" in html
    _, container = rendered("container.json")
    assert "VM timings measure an emulator" not in container


def test_what_the_host_sees_of_each_side():
    result, html = rendered("both.json")
    container, vm = result.sides["container"].kernel, result.sides["vm"].kernel
    assert container is not None and vm is not None and vm.guest_boot_id is not None
    assert "yes: ps -e on the host lists redis-server 23262" in html
    assert "no: ps -e | grep redis-server finds none of its processes" in html
    for pid in (23262, 23242, 41877):
        assert f">{pid}</td>" in html
    assert "messagebus (100)" in html and "libvirt-qemu (64055)" in html
    for boot_id in (container.host_boot_id, vm.guest_boot_id):
        assert boot_id in html
    assert "the host&#x27;s kernel" in html and "a kernel of its own" in html


def test_an_empty_chart_is_one_line_saying_why():
    _, html = rendered("both.json")
    assert "What isolation costs: throughput against native – nothing to show: no load was run" in html
    _, six = rendered("six-sides (built)")
    assert six.count("nothing to show") == 1  # the inside probe's chart alone: the built document has no inside runs
    assert "who answers the workload&#x27;s calls – nothing to show: the inside probe ran on no side" in six


def test_compare_marks_what_differs_and_holds_every_run():
    both, six = judged(fixture("both.json")), judged(six_sides())
    html = page.render([("laptop", both), ("runner", six)])
    assert "2 runs compared" in html and network_references(html) == []
    assert embedded(html) == [{"label": "laptop", "result": dumped(both)}, {"label": "runner", "result": dumped(six)}]
    assert 'class="differs"' in html and "≠ marks a row whose runs differ" in html
    rows = grid_verdicts(html)
    claims_by_id = {c.id: c for c in six.claims}
    assert len(rows) == sum(len(c.sides) for c in claims_by_id.values()) + 2 * 8  # six's sides + both's two
    assert all(len(row) == 2 for row in rows)
    assert "<svg" in html


def test_compare_of_the_same_run_marks_nothing():
    both = judged(fixture("both.json"))
    html = page.render([("a", both), ("b", both.model_copy(deep=True))])
    assert 'class="differs"' not in html


def test_write_is_whole_or_a_clear_error(tmp_path: Path):
    result = judged(fixture("vm.json"))
    path = page.write([("vm", result)], tmp_path / "page.html")
    assert embedded(path.read_text()) == dumped(result)
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]
    with pytest.raises(ExplorerError, match="results page could not be written"):
        page.write([("vm", result)], tmp_path / "missing" / "page.html")


def test_render_needs_a_result():
    with pytest.raises(ValueError):
        page.render([])


def test_the_embedded_json_is_the_document_as_parsed_and_names_its_first_version():
    html = page.render([("both", typed(fixture("both.json")))])
    shown = embedded(html)
    assert shown["schema"] == "explorer.result/4" and shown["upgraded_from"] == "explorer.result/1"
    assert shown == json.loads(json.dumps(shown)) and shown["sides"]["container"]["name"] == "container"
