"""A flame graph from lcc.flame opened in a real browser (headless chromium).

The SVG is loaded as a document; a small script added for the test waits for
the page, checks that the expected frame names are drawn as text, clicks a
frame (the graph's own zoom script runs) and reports what it saw in the DOM,
which ``--dump-dom`` prints.  A script error in the page shows up as a
missing report.  Skips without chromium unless ``LCC_REQUIRE_BPF=1``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from lcc import flame

FOLDED = {
    "entry_SYSCALL_64;do_syscall_64;__x64_sys_nanosleep;do_nanosleep;schedule": 600,
    "entry_SYSCALL_64;do_syscall_64;ksys_read;pipe_read;schedule": 300,
    "ret_from_fork;kthread;worker_thread;schedule": 100,
}

# Appended to the graph's own script: runs after it, in the same document.
PROBE = """
<script><![CDATA[
window.addEventListener('load', function () {
  var out = {errors: window.__errors || []};
  try {
    out.texts = [].map.call(document.querySelectorAll('#frames g.f text'),
                            function (t) { return t.textContent; });
    var g = document.querySelector('#frames g.f[data-name="pipe_read"]');
    var before = +g.querySelector('rect').getAttribute('width');
    g.dispatchEvent(new MouseEvent('click', {bubbles: true}));
    out.zoomed_width = +g.querySelector('rect').getAttribute('width');
    out.before_width = before;
    out.hidden_after_zoom = [].filter.call(document.querySelectorAll('#frames g.f'),
        function (e) { return e.style.display === 'none'; }).map(function (e) {
          return e.dataset.name; });
    out.unzoom_shown = document.getElementById('unzoom').style.display !== 'none';
  } catch (e) { out.errors.push(String(e)); }
  var pre = document.createElementNS('http://www.w3.org/2000/svg', 'text');
  pre.setAttribute('id', 'lcc-report');
  pre.textContent = 'LCC' + 'REPORT' + JSON.stringify(out) + 'LCC' + 'END';
  document.documentElement.appendChild(pre);
});
]]></script>
"""
ERRORS = """<script><![CDATA[window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
]]></script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("LCC_REQUIRE_BPF") == "1":
        pytest.fail("chromium is not installed (scripts/setup.sh installs it)")
    pytest.skip("chromium is not installed (scripts/setup.sh installs it)")


def _run(args: list[str]) -> str:
    r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                        "--user-data-dir=" + args.pop(0), *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_flame_graph_renders_and_zooms_in_chromium(tmp_path):
    plain = flame.render_svg(FOLDED, title="lcc flame test", width=1200)
    svg = plain
    # The error hook first, the probe last: both are plain SVG <script>s.
    svg = svg.replace('<g id="frames">', ERRORS + '<g id="frames">', 1)
    svg = svg.replace("</svg>", PROBE + "</svg>")
    page = tmp_path / "flame.svg"
    page.write_text(svg)
    dom = _run([str(tmp_path / "profile"), "--virtual-time-budget=3000", "--dump-dom",
                page.as_uri()])
    m = re.search(r"LCCREPORT(.*?)LCCEND", dom, re.S)
    assert m, "the page's probe did not report (a script error?):\n" + dom[-3000:]
    from html import unescape
    report = json.loads(unescape(m.group(1)))
    assert report["errors"] == []
    for name in ("do_syscall_64", "do_nanosleep", "pipe_read", "kthread", "schedule", "all"):
        assert name in report["texts"], report["texts"]
    # Clicking pipe_read (30% of the width) zooms it to the whole width.
    assert report["zoomed_width"] > 3 * report["before_width"] * 0.9
    assert "kthread" in report["hidden_after_zoom"] and "pipe_read" not in report[
        "hidden_after_zoom"]
    assert report["unzoom_shown"]
    # And a screenshot of the graph as a user opens it: the page paints.
    (tmp_path / "plain.svg").write_text(plain)
    shot = tmp_path / "flame.png"
    _run([str(tmp_path / "profile2"), f"--screenshot={shot}", "--window-size=1200,400",
          (tmp_path / "plain.svg").as_uri()])
    assert shot.stat().st_size > 5000
    keep = os.environ.get("LCC_FLAME_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
