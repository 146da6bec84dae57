"""lcc.flame: folding stacks into flamegraph.pl's input, and the SVG drawn from it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from lcc import flame

SVG = "{http://www.w3.org/2000/svg}"


def test_fold_reverses_to_root_first_and_merges():
    folded = flame.fold([
        (["schedule+0x23", "do_nanosleep+0x5e", "do_syscall_64+0x71"], 3),
        (["schedule+0x40", "do_nanosleep+0x5e", "do_syscall_64+0x71"], 2),  # other offset
        (["pipe_read+0x1", "do_syscall_64+0x71"], 1),
    ])
    assert folded == {"do_syscall_64;do_nanosleep;schedule": 5,
                      "do_syscall_64;pipe_read": 1}
    assert flame.folded_lines(folded) == ["do_syscall_64;do_nanosleep;schedule 5",
                                          "do_syscall_64;pipe_read 1"]


def test_fold_keeps_offsets_modules_and_odd_names_safe():
    folded = flame.fold([(["nft_do_chain+0x9c [nf_tables]", "a;b+0x1"], 1)])
    assert folded == {"a:b;nft_do_chain [nf_tables]": 1}
    kept = flame.fold([(["f+0x1", "g+0x2"], 1)], strip_offsets=False, root="sleep")
    assert kept == {"sleep;g+0x2;f+0x1": 1}
    # An empty stack keeps its count; zero counts are left out.
    assert flame.fold([([], 4), (["x"], 0)]) == {"[no stack]": 4}


def test_parse_folded_round_trip_and_errors():
    folded = {"a;b;c": 7, "a;d": 1}
    assert flame.parse_folded("\n".join(flame.folded_lines(folded)) + "\n\n") == folded
    with pytest.raises(ValueError, match="line 2"):
        flame.parse_folded("a;b 1\na;b\n")


def _frames(svg: str) -> dict[str, tuple[float, float, str]]:
    """name -> (x, width, title) of each frame group (names unique in these tests)."""
    root = ET.fromstring(svg)  # also: the document is well-formed XML
    out = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "f":
            continue
        rect, title = g.find(f"{SVG}rect"), g.find(f"{SVG}title")
        out[g.get("data-name")] = (float(rect.get("x")), float(rect.get("width")), title.text)
    return out


def test_svg_widths_are_proportional_to_counts():
    folded = {"main;work;compute": 60, "main;work;io": 30, "main;idle": 10}
    svg = flame.render_svg(folded, title="t <&>", width=1000)
    frames = _frames(svg)
    inner = 1000 - 2 * flame.PAD_X
    assert frames["all"][1] == pytest.approx(inner)
    assert frames["main"][1] == pytest.approx(inner)
    assert frames["work"][1] == pytest.approx(inner * 0.9)
    assert frames["compute"][1] == pytest.approx(inner * 0.6)
    assert frames["io"][1] == pytest.approx(inner * 0.3)
    assert frames["idle"][1] == pytest.approx(inner * 0.1)
    # Children sit side by side inside their parent.
    assert frames["compute"][0] + frames["compute"][1] == pytest.approx(frames["io"][0])
    assert frames["compute"][2] == "compute (60 samples, 60.00%)"
    assert "t &lt;&amp;&gt;" in svg and "<script>" in svg


def test_svg_roots_at_the_bottom_and_names_cut_to_fit():
    long = "a_function_with_a_very_long_name_that_cannot_fit"
    svg = flame.render_svg({f"root;{long}": 1, "root;other": 999}, width=400)
    root = ET.fromstring(svg)
    texts = {}
    ys = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "f":
            texts[g.get("data-name")] = g.find(f"{SVG}text").text or ""
            ys[g.get("data-name")] = float(g.find(f"{SVG}rect").get("y"))
    assert ys["all"] > ys["root"] > ys["other"]
    assert texts[long] == ""  # far too narrow for any of it
    assert texts["other"] == "other"
    narrow = flame.render_svg({"root;" + long: 1}, width=200)
    cut = [g.find(f"{SVG}text").text for g in ET.fromstring(narrow).iter(f"{SVG}g")
           if g.get("data-name") == long][0]
    assert cut.endswith("..") and long.startswith(cut[:-2])


def test_svg_is_deterministic_with_colours_by_name():
    folded = {"a;b": 2, "a;c": 1}
    assert flame.render_svg(folded) == flame.render_svg(dict(reversed(folded.items())))
    fills = {}
    for g in ET.fromstring(flame.render_svg({"x;b": 1, "y;b": 1})).iter(f"{SVG}g"):
        if g.get("data-name") == "b":
            fills.setdefault("b", set()).add(g.find(f"{SVG}rect").get("fill"))
    assert len(fills["b"]) == 1  # the same name, the same colour


def test_svg_of_nothing_is_still_a_document():
    svg = flame.render_svg({})
    assert "(no stacks)" in svg
    ET.fromstring(svg)
