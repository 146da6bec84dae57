"""Flame graphs: stacks folded into ``root;...;leaf count`` lines, and an SVG drawn from them.

- :func:`fold` turns ``(frames, count)`` pairs (frames innermost first, as
  :meth:`lcc.maps.StackTraceMap.frames` gives them) into a
  ``{"root;...;leaf": count}`` dict, merging equal stacks.
- :func:`folded_lines` writes that as the text that ``flamegraph.pl``,
  speedscope and inferno read: one ``frame;frame;frame count`` line per
  stack, root first, sorted for stable output.
- :func:`parse_folded` reads such text back.
- :func:`render_svg` draws an interactive flame graph from folded stacks:
  one rectangle per frame, as wide as its count, names cut to fit, a
  ``<title>`` tooltip on each, click to zoom, a search box, colours chosen
  by a hash of the name (so the same function has the same colour in every
  graph).  It needs nothing but the standard library.

Frame names are kept as given except that ``;`` (the separator) becomes
``:`` and line breaks become spaces; ``strip_offsets=True`` in :func:`fold`
turns ``func+0x1a`` into ``func`` so that the calls from different places in
one function merge, as flame graphs usually show them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from xml.sax.saxutils import escape

__all__ = ["fold", "folded_lines", "parse_folded", "render_svg"]


def _clean(frame: str, strip_offsets: bool) -> str:
    name = frame.replace(";", ":").replace("\n", " ").replace("\r", " ").strip()
    if strip_offsets:
        head, sep, tail = name.partition("+0x")
        if sep:
            # Keep a module suffix (``func+0x1a [nf_tables]`` -> ``func [nf_tables]``).
            _, _, module = tail.partition(" ")
            name = f"{head} {module}".strip()
    return name or "[unknown]"


def fold(stacks: Iterable[tuple[Iterable[str], int]], *, strip_offsets: bool = True,
         root: str | None = None) -> dict[str, int]:
    """``{"root;...;leaf": count}`` from ``(frames, count)`` pairs, frames innermost first.

    Equal stacks are summed; a stack with no frames is kept as ``[no stack]``
    so that its count is not lost; counts of zero or less are left out.
    ``root``, if given, is put below every stack (a process name, a state).
    """
    out: dict[str, int] = {}
    for frames, count in stacks:
        if count <= 0:
            continue
        names = [_clean(f, strip_offsets) for f in frames]
        names.reverse()  # root first
        if not names:
            names = ["[no stack]"]
        if root is not None:
            names.insert(0, _clean(root, False))
        key = ";".join(names)
        out[key] = out.get(key, 0) + int(count)
    return out


def folded_lines(folded: Mapping[str, int]) -> list[str]:
    """The ``frame;frame count`` lines of ``folded``, sorted by stack."""
    return [f"{stack} {count}" for stack, count in sorted(folded.items())]


def parse_folded(text: str) -> dict[str, int]:
    """Folded-stack text back into ``{stack: count}``; blank lines are skipped.

    Raises ValueError naming the line for a line without a trailing count.
    """
    out: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        try:
            value = int(count)
        except ValueError:
            raise ValueError(f"line {n}: no count at the end: {line!r}") from None
        if not stack:
            raise ValueError(f"line {n}: no stack before the count: {line!r}")
        out[stack] = out.get(stack, 0) + value
    return out


# -- rendering -----------------------------------------------------------------------

class _Node:
    __slots__ = ("name", "value", "children")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0
        self.children: dict[str, _Node] = {}


def _tree(folded: Mapping[str, int]) -> _Node:
    root = _Node("all")
    for stack, count in folded.items():
        if count <= 0:
            continue
        root.value += count
        node = root
        for name in stack.split(";"):
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = _Node(name)
            child.value += count
            node = child
    return root


def _colour(name: str, palette: str) -> str:
    """A warm (or, for ``palette="blue"``, cool) colour fixed by a hash of ``name``."""
    h = hashlib.blake2b(name.encode(), digest_size=3).digest()
    a, b, c = h[0] / 255, h[1] / 255, h[2] / 255
    if palette == "blue":
        return f"rgb({int(80 + 60 * a)},{int(120 + 60 * b)},{int(190 + 55 * c)})"
    return f"rgb({int(205 + 50 * a)},{int(80 + 150 * b)},{int(40 * c)})"


FRAME_H = 16
FONT_SIZE = 12
CHAR_W = FONT_SIZE * 0.59  # an average glyph of the monospace font below
PAD_TOP = 50
PAD_BOTTOM = 30
PAD_X = 10

_SCRIPT = """
(function () {
  var svg = document.documentElement, frames = document.getElementById('frames');
  var W = %(width)s, PAD = %(pad)s, CW = %(charw)s, details = document.getElementById('details');
  var all = [].slice.call(frames.querySelectorAll('g.f'));
  all.forEach(function (g) {
    var r = g.querySelector('rect');
    g.dataset.x = r.getAttribute('x'); g.dataset.w = r.getAttribute('width');
    g.dataset.full = g.querySelector('title').textContent;
    g.addEventListener('click', function (ev) { zoom(g); ev.stopPropagation(); });
    g.addEventListener('mouseover', function () { details.textContent = g.dataset.full; });
    g.addEventListener('mouseout', function () { details.textContent = ' '; });
  });
  function fit(g, x, w) {
    var r = g.querySelector('rect'), t = g.querySelector('text');
    r.setAttribute('x', x); r.setAttribute('width', Math.max(w, 0));
    t.setAttribute('x', x + 3);
    var name = g.dataset.name, n = Math.floor((w - 6) / CW);
    t.textContent = n >= name.length ? name : (n > 2 ? name.slice(0, n - 2) + '..' : '');
  }
  function zoom(target) {
    var x0 = +target.dataset.x, w0 = +target.dataset.w, y0 = +target.dataset.y;
    var scale = (W - 2 * PAD) / w0;
    all.forEach(function (g) {
      var x = +g.dataset.x, w = +g.dataset.w, y = +g.dataset.y;
      var eps = 1e-6, inside = y <= y0 && x >= x0 - eps && x + w <= x0 + w0 + eps;
      var parent = y > y0 && x <= x0 + eps && x + w >= x0 + w0 - eps;
      g.style.display = inside || parent ? '' : 'none';
      g.classList.toggle('parent', parent);
      if (inside) fit(g, PAD + (x - x0) * scale, w * scale);
      else if (parent) fit(g, PAD, W - 2 * PAD);
    });
    document.getElementById('unzoom').style.display = '';
  }
  function unzoom() {
    all.forEach(function (g) {
      g.style.display = ''; g.classList.remove('parent'); fit(g, +g.dataset.x, +g.dataset.w);
    });
    document.getElementById('unzoom').style.display = 'none';
  }
  document.getElementById('unzoom').addEventListener('click', unzoom);
  document.getElementById('search').addEventListener('click', function () {
    var term = window.prompt('Search (regular expression)', '');
    var re = null;
    if (term) { try { re = new RegExp(term); } catch (e) { re = null; } }
    var matched = 0;
    all.forEach(function (g) {
      var hit = re !== null && re.test(g.dataset.name);
      g.classList.toggle('match', hit);
      if (hit) matched++;
    });
    document.getElementById('matched').textContent = re ? (matched + ' matched') : '';
  });
})();
"""

_STYLE = """
text { font-family: monospace; font-size: %(font)spx; fill: #000; }
g.f text { pointer-events: none; }
g.f rect { stroke: #fff; stroke-width: 0.5; }
g.f:hover rect { stroke: #000; stroke-width: 1; }
g.f { cursor: pointer; }
g.parent rect { opacity: 0.5; }
g.match rect { fill: rgb(230,0,230) !important; }
#title { font-size: 17px; }
.button { fill: #224; text-decoration: underline; cursor: pointer; }
"""


def _fit_text(name: str, width: float) -> str:
    n = int((width - 6) // CHAR_W)
    if n >= len(name):
        return name
    return name[: n - 2] + ".." if n > 2 else ""


def render_svg(folded: Mapping[str, int], *, title: str = "Flame Graph", width: int = 1200,
               unit: str = "samples", palette: str = "hot", min_width: float = 0.1) -> str:
    """An interactive flame-graph SVG (a complete document, as text) of ``folded``.

    Each frame is a ``<g class="f">`` holding a ``<rect>`` as wide as its
    count (``width - 2*PAD_X`` pixels stand for the total), a ``<text>``
    with the name cut to fit, and a ``<title>`` tooltip ``name (count unit,
    share%)``.  Roots are at the bottom.  Frames narrower than
    ``min_width`` pixels are left out (their count stays in their parent).
    Clicking a frame zooms to it; "Reset Zoom" and "Search" are at the top.
    The output depends only on the arguments (stable order, colours by
    name hash).
    """
    tree = _tree(folded)
    total = tree.value
    inner_w = width - 2 * PAD_X

    def depth(node: _Node) -> int:
        return 1 + max((depth(c) for c in node.children.values()), default=0)

    levels = depth(tree) if total else 1
    height = PAD_TOP + levels * FRAME_H + PAD_BOTTOM
    scale = inner_w / total if total else 0.0
    out: list[str] = []
    w = out.append

    def emit(node: _Node, x: float, level: int) -> None:
        fw = node.value * scale
        if fw < min_width:
            return
        y = height - PAD_BOTTOM - (level + 1) * FRAME_H
        share = 100.0 * node.value / total
        tip = f"{node.name} ({node.value:,} {unit}, {share:.2f}%)"
        fill = "rgb(240,240,230)" if level == 0 else _colour(node.name, palette)
        w(f'<g class="f" data-name="{escape(node.name, {chr(34): "&quot;"})}" '
          f'data-y="{y}"><title>{escape(tip)}</title>'
          f'<rect x="{x:.3f}" y="{y}" width="{fw:.3f}" height="{FRAME_H - 1}" '
          f'fill="{fill}" rx="2" ry="2"/>'
          f'<text x="{x + 3:.3f}" y="{y + FRAME_H - 4}">{escape(_fit_text(node.name, fw))}'
          "</text></g>")
        cx = x
        for name in sorted(node.children):
            child = node.children[name]
            emit(child, cx, level + 1)
            cx += child.value * scale

    w('<?xml version="1.0" standalone="no"?>')
    w(f'<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="{width}" '
      f'height="{height}" viewBox="0 0 {width} {height}">')
    w(f"<style>{_STYLE % {'font': FONT_SIZE}}</style>")
    w(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f8f8f2"/>')
    w(f'<text id="title" x="{width / 2}" y="24" text-anchor="middle">{escape(title)}</text>')
    w(f'<text id="unzoom" class="button" x="{PAD_X}" y="24" style="display:none">Reset Zoom</text>')
    w(f'<text id="search" class="button" x="{width - PAD_X}" y="24" '
      'text-anchor="end">Search</text>')
    w(f'<text id="matched" x="{width - PAD_X}" y="{height - 10}" text-anchor="end"> </text>')
    w(f'<text id="details" x="{PAD_X}" y="{height - 10}"> </text>')
    w('<g id="frames">')
    if total:
        emit(tree, float(PAD_X), 0)
    else:
        w(f'<text x="{width / 2}" y="{PAD_TOP + 10}" text-anchor="middle">(no stacks)</text>')
    w("</g>")
    script = _SCRIPT % {"width": width, "pad": PAD_X, "charw": CHAR_W}
    w(f"<script><![CDATA[{script}]]></script>")
    w("</svg>")
    return "\n".join(out) + "\n"
