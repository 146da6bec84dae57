"""Maps in the kernel: every kind read and written from both sides.

tests/progs/maps.bpf.c runs on getppid() from this process only; each test
writes what the program reads, triggers it once, and checks what it wrote.
"""

from __future__ import annotations

import errno
import os
import re

import pytest

from lcc import BpfError, KeyNotFound, _libbpf
from lcc.errors import NotSupported
from lcc.maps import (ArrayMap, HashMap, LpmTrieMap, LruHashMap, LruPerCpuHashMap, Map,
                      PerCpuArrayMap, PerCpuHashMap, QueueMap, StackMap, StackTraceMap)

from kutil import trigger

pytestmark = pytest.mark.bpf

# enum arr_slot of tests/progs/maps.h
ARR_IN, ARR_DOUBLE, ARR_CALLS, ARR_PERCPU_SEEN, ARR_CPU, ARR_STACKID, ARR_LPM = range(7)


@pytest.fixture
def tool(load):
    return load("maps.bpf.c")


def test_map_classes_come_from_the_type_table(tool):
    expected = {"hash_in": HashMap, "lru": LruHashMap, "arr": ArrayMap,
                "pc_hash": PerCpuHashMap, "pc_arr": PerCpuArrayMap,
                "lru_pc": LruPerCpuHashMap, "queue": QueueMap, "stack": StackMap,
                "stacks": StackTraceMap, "trie": LpmTrieMap}
    for name, cls in expected.items():
        assert type(tool.maps[name]) is cls, name
    assert ".bss" not in set(tool.maps)  # globals are reached through tool.bss
    jumps = tool.maps["jumps"]  # no class for prog arrays: the generic map
    assert type(jumps) is Map
    assert (jumps.type_name, jumps.key_size, jumps.value_size, jumps.max_entries) == \
        ("prog_array", 4, 4, 2)
    assert jumps.fd >= 0
    with pytest.raises(KeyError, match="nope"):
        tool.maps["nope"]
    m = tool.maps["hash_in"]
    assert (m.key_size, m.value_size, m.max_entries, m.type_name) == (4, 32, 64, "hash")
    assert m.fd >= 0


def test_hash_struct_values_both_ways(tool):
    hin, hout = tool.maps["hash_in"], tool.maps["hash_out"]
    hin[1] = {"count": 5, "name": "abc", "inner": {"x": 21, "tag": [7, 8]}}
    assert hin[1].to_dict() == {"count": 5, "name": "abc", "inner": {"x": 21, "tag": [7, 8]}}

    trigger()

    # the program echoed key 1 into key 2 with count+1 and x*2
    echo = hout[2]
    assert (echo.count, echo.name, echo.inner.x, echo.inner.tag) == (6, "abc", 42, (7, 8))
    # and wrote its own element under our pid
    mine = hout[os.getpid()]
    assert (mine.count, mine.name) == (1, "from-bpf")
    # a decoded value is accepted back as it is
    hin[3] = echo
    assert hin[3] == echo


def test_mutable_mapping_api(tool):
    m = tool.maps["hash_in"]
    assert len(m) == 0 and 1 not in m
    for k in range(5):
        m[k] = {"count": k * 10, "name": f"n{k}"}
    assert len(m) == 5
    assert sorted(m.keys()) == [0, 1, 2, 3, 4]
    assert sorted(v.count for v in m.values()) == [0, 10, 20, 30, 40]
    assert sorted((k, v.name) for k, v in m.items()) == [(k, f"n{k}") for k in range(5)]
    assert 3 in m and 9 not in m
    assert m.get(3).count == 30
    assert m.get(9) is None and m.get(9, "dflt") == "dflt"
    assert m.pop(4).count == 40 and 4 not in m
    assert m.pop(4, None) is None
    del m[0]
    with pytest.raises(KeyNotFound) as ei:
        del m[0]
    assert isinstance(ei.value, KeyError) and "hash_in" in str(ei.value)
    with pytest.raises(KeyError):
        m[42]
    m.update({7: {"count": 7}}, )
    assert m[7].count == 7
    assert set(m.to_dict()) == {1, 2, 3, 7}
    m.clear()
    assert len(m) == 0 and m.items() == []


def test_hash_update_flags(tool):
    from lcc.maps import BPF_EXIST, BPF_NOEXIST
    m = tool.maps["lru"]
    m.update(1, 10, BPF_NOEXIST)
    with pytest.raises(BpfError, match="already exists") as ei:
        m.update(1, 11, BPF_NOEXIST)
    assert ei.value.errno == errno.EEXIST
    with pytest.raises(KeyNotFound):
        m.update(2, 20, BPF_EXIST)
    m.update(1, 12, BPF_EXIST)
    assert m[1] == 12


def test_full_hash_says_so(tool):
    m = tool.maps["hash_in"]
    for k in range(m.max_entries):
        m[k] = {"count": k}
    with pytest.raises(BpfError, match="is full") as ei:
        m[1000] = {"count": 1}
    assert ei.value.errno == errno.E2BIG
    assert "map_sizes={'hash_in': n}" in ei.value.hint


def test_lru_hash_both_ways(tool):
    lru = tool.maps["lru"]
    lru[7] = 100
    trigger()
    assert lru[8] == 101
    assert dict(lru.items()) == {7: 100, 8: 101}


def test_array_both_ways(tool):
    arr = tool.maps["arr"]
    assert len(arr) == 8 and list(arr) == list(range(8))
    arr[ARR_IN] = 21
    trigger()
    trigger()
    assert arr[ARR_DOUBLE] == 42 and arr[ARR_CALLS] == 2
    assert dict(arr.items())[ARR_CALLS] == 2
    with pytest.raises(TypeError):
        del arr[0]
    with pytest.raises(KeyNotFound):
        arr[8]  # out of range
    with pytest.raises(KeyNotFound, match=r"index 8 is out of range for array map 'arr' \(0..7\)"):
        arr[8] = 1
    arr.clear()
    assert set(arr.values()) == {0}


def test_percpu_hash_per_cpu_values_and_sum(tool):
    pc = tool.maps["pc_hash"]
    n = pc.ncpus
    assert n == _libbpf.num_possible_cpus()
    pc[1] = [100 + cpu for cpu in range(n)]  # each CPU its own value
    assert pc[1] == [100 + cpu for cpu in range(n)]

    trigger()
    trigger()

    arr = tool.maps["arr"]
    # the program read pc_hash[1] on the CPU it ran on
    assert arr[ARR_PERCPU_SEEN] == 100 + arr[ARR_CPU]
    counts = pc[0]
    assert isinstance(counts, list) and len(counts) == n
    assert pc.sum(0) == 2 == sum(counts)
    assert pc.sums()[0] == 2
    pc[5] = 3  # a scalar goes to every CPU
    assert pc[5] == [3] * n and pc.sum(5) == 3 * n


def test_percpu_array_of_structs(tool):
    pa = tool.maps["pc_arr"]
    trigger()
    trigger()
    trigger()
    per_cpu = pa[0]
    assert len(per_cpu) == pa.ncpus
    assert sum(p.a for p in per_cpu) == 3
    assert pa.sum(0) == {"a": 3, "b": 6}
    pa[1] = [{"a": i, "b": 0} for i in range(pa.ncpus)]
    assert [p.a for p in pa[1]] == list(range(pa.ncpus))
    with pytest.raises(ValueError):
        pa[1] = [{"a": 1}]  # a list must give every CPU a value


def test_lru_percpu_hash(tool):
    m = tool.maps["lru_pc"]
    trigger()
    assert m.sum(os.getpid()) == 1
    assert list(m.keys()) == [os.getpid()]


def test_queue_and_stack_push_pop_peek(tool):
    q, s = tool.maps["queue"], tool.maps["stack"]
    for v in (1, 2, 3):
        q.push(v)
    assert q.peek() == 1  # FIFO

    trigger()  # the program pops the queue and pushes value*10 on the stack

    with pytest.raises(KeyNotFound) as ei:
        q.pop()
    assert "empty" in str(ei.value)
    assert s.peek() == 30  # LIFO
    assert s.pop() == 30
    assert s.drain() == [20, 10]
    q.push(5)
    q.push(6)
    assert q.pop() == 5 and q.drain() == [6]


def test_stack_trace_map_symbolized(tool):
    trigger()
    stack_id = tool.maps["arr"][ARR_STACKID]
    assert stack_id < (1 << 63), "bpf_get_stackid failed"
    st = tool.maps["stacks"]
    addrs = st.stack(stack_id)
    assert addrs and all(a >= 0xffff000000000000 for a in addrs)
    frames = st.symbolize(stack_id)
    assert len(frames) == len(addrs)
    assert all(re.fullmatch(r"[\w.]+\+0x[0-9a-f]+( \[\w+\])?", f) for f in frames), frames
    assert any("syscall" in f for f in frames), frames  # we came in through a syscall
    assert st.getStacks(stack_id, 2) == frames[:2]  # pyLCC's name
    assert st.frames(stack_id) == frames
    assert st.frames(stack_id, user=True) == [f"{a:#x}" for a in addrs]
    del st[stack_id]
    with pytest.raises(KeyNotFound):
        st.stack(stack_id)
    assert st.frames(stack_id) == ["[stack gone]"]  # frames() never raises for an id
    assert st.frames(-errno.EFAULT) == ["[no stack: error -14 (EFAULT)]"]
    assert st.frames(-errno.EFAULT, markers=False) == []


def test_lpm_trie_longest_prefix(tool):
    t = tool.maps["trie"]
    t[{"prefixlen": 8, "addr": [10, 0, 0, 0]}] = 8
    t[{"prefixlen": 16, "addr": [10, 1, 0, 0]}] = 16
    trigger()
    assert tool.maps["arr"][ARR_LPM] == 16
    assert sorted((k.prefixlen, v) for k, v in t.items()) == [(8, 8), (16, 16)]


def test_large_map_iterates_by_batch(tool, monkeypatch):
    big = tool.maps["big"]
    want = {i: i * i for i in range(5000)}
    big.update(want)
    calls = []
    real = _libbpf.map_lookup_batch

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(_libbpf, "map_lookup_batch", counting)
    assert dict(big.items()) == want
    assert calls, "batch lookup was not used"
    assert len(big) == 5000
    assert sorted(big.values()) == sorted(want.values())


def test_large_map_falls_back_to_get_next_key(tool, monkeypatch):
    big = tool.maps["big"]
    want = {i: i + 1 for i in range(3000)}
    big.update(want)

    def no_batch(*a, **kw):
        raise NotSupported("map batch lookup", "batch lookup is not supported for this map")

    monkeypatch.setattr(_libbpf, "map_lookup_batch", no_batch)
    assert dict(big.items()) == want
    assert big._batch_ok is False  # decided once, remembered
    assert dict(big.items()) == want
    big.clear()
    assert len(big) == 0


def test_bad_key_type_says_which_map(tool):
    with pytest.raises(TypeError, match="hash_in"):
        tool.maps["hash_in"]["not a number"]
    assert "x" not in tool.maps["hash_in"]


def test_print_log2_hist_of_an_array_the_program_filled(load, capsys):
    from lcc.hist import Log2Hist
    lat2 = load("hist10.bpf.c").maps["lat2"]
    trigger()  # hist2_push(&lat2, 5): slot 2, [4, 8)

    lat2.print_log2_hist("usecs")

    out = capsys.readouterr().out
    assert out == Log2Hist.from_slots(lat2.get()).render("usecs") + "\n"
    assert out.startswith("     usecs")
    assert "4 -> 7" in out and sum(lat2.get()) == 1
