"""One owner, one close(): what a tool holds is released once, by close, `with` or GC."""

from __future__ import annotations

import gc
import os
import weakref
from pathlib import Path

import pytest

from lcc import ClbcBase, ClosedError, LccError, _libbpf

from kutil import trigger

pytestmark = pytest.mark.bpf

PROGS = Path(__file__).resolve().parent.parent / "progs"


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _bpf_mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum("bpf-map" in ln or "bpf_ringbuf" in ln for ln in f)


def _full_tool(obj: bytes) -> ClbcBase:
    """A tool holding every kind of resource: programs, links, buffers, mapped globals."""
    tool = ClbcBase("events", obj=obj, rodata={"target_pid": os.getpid()})
    tool.maps["rb"].open_ring_buffer(lambda e: None)
    tool.maps["pb"].open_perf_buffer(lambda e: None)
    tool.bss.seq  # maps .bss into memory
    return tool


@pytest.fixture
def events_obj(prog_object):
    obj = prog_object("events.bpf.c")
    _full_tool(obj).close()  # warm up libbpf's and lcc's one-time state
    return obj


def test_close_releases_everything(events_obj):
    fds, mappings = _fds(), _bpf_mappings()
    tool = _full_tool(events_obj)
    ids = [p.id for p in tool.obj.programs.values()]
    assert all(_libbpf.prog_exists(i) for i in ids)
    assert _fds() > fds
    tool.close()
    assert tool.closed
    assert _fds() == fds
    assert _bpf_mappings() == mappings
    assert not any(_libbpf.prog_exists(i) for i in ids)
    tool.close()  # idempotent
    assert _fds() == fds


def test_with_closes(events_obj):
    fds = _fds()
    with _full_tool(events_obj) as tool:
        trigger()
        assert tool.bss.seq == 1
        links = list(tool.links)
    assert tool.closed and all(lk.closed for lk in links)
    assert _fds() == fds
    with pytest.raises(ClosedError):
        tool.bss


def test_with_closes_on_error(events_obj):
    fds = _fds()
    with pytest.raises(RuntimeError):
        with _full_tool(events_obj):
            raise RuntimeError("in the tool's block")
    assert _fds() == fds


def test_garbage_collection_releases(events_obj):
    fds = _fds()
    tool = _full_tool(events_obj)
    ids = [p.id for p in tool.obj.programs.values()]
    del tool
    gc.collect()
    assert _fds() == fds
    assert not any(_libbpf.prog_exists(i) for i in ids)


class _OwnCallbacks(ClbcBase):
    """pyLCC style: the buffers call methods of the tool itself."""

    def __init__(self, obj: bytes) -> None:
        super().__init__("events", obj=obj, rodata={"target_pid": os.getpid()})
        self.ring_seqs: list[int] = []
        self.perf_seqs: list[int] = []
        self.maps["rb"].open_ring_buffer(self._on_ring)
        self.maps["pb"].open_perf_buffer(self._on_perf)

    def _on_ring(self, event) -> None:
        self.ring_seqs.append(event.seq)

    def _on_perf(self, cpu, event, size) -> None:
        self.perf_seqs.append(event.seq)


@pytest.mark.parametrize("ring_backend", ["mmap", "libbpf"])
def test_tool_with_its_own_methods_as_callbacks_is_collected(events_obj, ring_backend,
                                                            monkeypatch):
    """The finalizer must not keep the tool alive through its buffers' callbacks."""
    monkeypatch.setenv("LCC_RINGBUF", ring_backend)
    fds, mappings = _fds(), _bpf_mappings()
    tool = _OwnCallbacks(events_obj)
    trigger()
    tool.ring_buffer_consume()
    tool.perf_buffer_poll(0)
    assert tool.ring_seqs == [1] and tool.perf_seqs == [1]  # the callbacks did run
    ids = [p.id for p in tool.obj.programs.values()]
    collected = weakref.ref(tool)
    del tool
    gc.collect()
    assert collected() is None
    assert not any(_libbpf.prog_exists(i) for i in ids)
    assert _fds() == fds
    assert _bpf_mappings() == mappings


def test_closed_link_detached_then_tool_close(load):
    tool = load("globals.bpf.c")
    tool.links[0].close()
    trigger()
    assert tool.bss.hits == 0
    tool.close()  # closing an already closed link again is harmless


def test_split_lifecycle_steps(prog_object):
    fds = _fds()
    tool = ClbcBase("globals", obj=prog_object("globals.bpf.c"), load=False)
    with pytest.raises(LccError, match="not loaded yet"):
        tool.maps["x"]
    assert tool.links == []
    tool.rodata.target_pid = os.getpid()
    tool.load()
    assert tool.links == []  # loaded, not attached
    trigger()
    assert tool.bss.hits == 0
    tool.attach_all()
    trigger()
    assert tool.bss.hits == 1
    tool.close()
    assert _fds() == fds


def test_map_sizes_before_load(load):
    tool = load("maps.bpf.c", map_sizes={"big": 100})
    assert tool.maps["big"].max_entries == 100
    with pytest.raises(LccError, match="before load"):
        tool.obj.resize_map("big", 10)


def test_source_compiled_from_a_path_and_from_a_string():
    """ClbcBase's own compile path: a .bpf.c path, and source text (pyLCC's bpf_str)."""
    path = PROGS / "globals.bpf.c"
    with ClbcBase(str(path), rodata={"target_pid": os.getpid()}) as tool:
        assert tool.name == "globals"
        trigger()
        assert tool.bss.hits == 1
    with ClbcBase("strtool", bpf_str=path.read_text(),
                  rodata={"target_pid": os.getpid(), "step": 2}) as tool:
        trigger()
        assert tool.bss.hits == 2


def test_missing_source_file():
    with pytest.raises(LccError, match="no BPF source"):
        ClbcBase("lcc_no_such_tool")


def test_source_found_beside_the_calling_script(tmp_path):
    """pyLCC: with bpf_str=None the source is <name>.bpf.c next to the script."""
    (tmp_path / "besides.bpf.c").write_text((PROGS / "globals.bpf.c").read_text())
    script = tmp_path / "tool.py"
    script.write_text("from lcc import ClbcBase\n"
                      "def run(pid):\n"
                      "    with ClbcBase('besides', rodata={'target_pid': pid}) as t:\n"
                      "        import os; os.getppid()\n"
                      "        return t.bss.hits\n")
    ns: dict = {}
    exec(compile(script.read_text(), str(script), "exec"), ns)
    assert ns["run"](os.getpid()) == 1
