"""lcc.export without a kernel: labels from BTF keys, values, histograms and the config.

The maps are the real map classes with their kernel part replaced: BTF types
built by hand, entries decoded through lcc's codecs, ``items()`` answered
from a list.
"""

from __future__ import annotations

import socket
import tomllib
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from lcc import export
from lcc.btf import Array, Enum, Int, Member, Struct
from lcc.codecs import codec
from lcc.errors import LccError
from lcc.maps import ArrayMap, HashMap, PerCpuArrayMap, PerCpuHashMap

pytest.importorskip("prometheus_client", reason="prometheus-client (lcc[export]) is not installed")

U8 = Int(1, "u8", 1)
U32 = Int(2, "u32", 4)
U64 = Int(3, "u64", 8)
CHAR = Int(4, "char", 1, signed=True, is_char=True)
COMM = Array(5, "", CHAR, 16)
STATE = Enum(6, "tcp_state", 4, (("ESTABLISHED", 1), ("SYN_SENT", 2), ("CLOSE", 7)))


def struct(name: str, *members: tuple[str, object]) -> Struct:
    out, off = [], 0
    for mname, t in members:
        out.append(Member(mname, t, off * 8))
        off += t.size  # type: ignore[attr-defined]
    return Struct(100 + len(name), name, off, tuple(out))


PROC_KEY = struct("proc_key", ("pid", U32), ("comm", COMM))


def fake(cls: type, name: str, key_t, value_t, entries, *, ncpus: int = 0):
    """A map of ``cls`` whose entries are ``entries`` ((key, value) as dicts or ints),
    put through the codecs of ``key_t`` and ``value_t`` as the kernel's bytes would be."""
    m = cls.__new__(cls)
    m.name = name
    m.spec = SimpleNamespace(name=name, key_type=key_t, value_type=value_t, internal=False)
    kc, vc = codec(key_t), codec(value_t)
    m.key_codec, m.value_codec = kc, vc
    dec = [(kc.decode(kc.encode(k)), vc.decode(vc.encode(v)) if not ncpus
            else [vc.decode(vc.encode(x)) for x in v]) for k, v in entries]
    m.items = lambda: list(dec)
    return m


def samples(collector) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one collect()."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in collector.collect() for s in fam.samples}


# -- labels --------------------------------------------------------------------------------

def test_struct_keys_give_one_label_per_member_decoded_by_type_and_name(monkeypatch):
    kallsyms = {0xffffffff81000010: "tcp_v4_connect"}
    monkeypatch.setattr("lcc.symbols.kernel_symbols", lambda: SimpleNamespace(
        resolve=lambda a: SimpleNamespace(name=kallsyms[a]) if a in kallsyms else None))
    key_t = struct("k", ("pid", U32), ("comm", COMM), ("state", STATE), ("saddr", U32),
                   ("daddr6", Array(7, "", U8, 16)), ("ip", U64),
                   ("inner", struct("in", ("cpu", U32))))
    labels = export.key_labels(key_t)
    assert [lb.name for lb in labels] == ["pid", "comm", "state", "saddr", "daddr6", "ip",
                                          "inner_cpu"]
    kc = codec(key_t)
    key = kc.decode(kc.encode({
        "pid": 42, "comm": "curl", "state": 2,
        "saddr": int.from_bytes(socket.inet_aton("10.1.2.3"), sys.byteorder),
        "daddr6": list(socket.inet_pton(socket.AF_INET6, "2001:db8::1")),
        "ip": 0xffffffff81000010, "inner": {"cpu": 3}}))
    assert [lb.value(key) for lb in labels] == [
        "42", "curl", "SYN_SENT", "10.1.2.3", "2001:db8::1", "tcp_v4_connect", "3"]


def test_unknown_enum_values_and_addresses_fall_back_to_numbers():
    (state,) = export.key_labels(STATE)
    assert state.name == "key"
    assert state.value(7) == "CLOSE" and state.value(9) == "9"
    (ip,) = export.key_labels(U64, export.MapConfig(labels={"key": export.LabelConfig(
        name="addr", decoder="hex")}))
    assert (ip.name, ip.value(255)) == ("addr", "0xff")


def test_config_renames_redecodes_and_rejects_unknown_members():
    conf = export.MapConfig(labels={"comm": export.LabelConfig("command"),
                                    "pid": export.LabelConfig(decoder="hex")})
    labels = export.key_labels(PROC_KEY, conf)
    assert [lb.name for lb in labels] == ["pid", "command"]
    assert labels[0].value(SimpleNamespace(pid=16)) == "0x10"
    with pytest.raises(LccError, match="no member tid"):
        export.key_labels(PROC_KEY, export.MapConfig(labels={"tid": None}))
    with pytest.raises(LccError, match="unknown decoder"):
        export.key_labels(PROC_KEY, export.MapConfig(
            labels={"pid": export.LabelConfig(decoder="ipv5")}))
    with pytest.raises(LccError, match="needs an enum"):
        export.key_labels(PROC_KEY, export.MapConfig(
            labels={"pid": export.LabelConfig(decoder="enum")}))


# -- histograms ---------------------------------------------------------------------------

def test_log2_slots_become_cumulative_power_of_two_buckets():
    # values 1, 2, 3, 4, 5: slot 0 {1}, slot 1 {2, 3}, slot 2 {4, 5}
    buckets, count, total = export.log2_buckets({0: 1, 1: 2, 2: 2})
    assert buckets == [("2", 1), ("4", 3), ("8", 5), ("+Inf", 5)]
    assert count == 5
    assert total == 1 * 0.5 + 2 * 2.5 + 2 * 5.5  # each count at its slot's midpoint
    # a higher top keeps buckets that were seen before; empty slots are empty buckets
    buckets, count, _ = export.log2_buckets({3: 1}, top=4)
    assert buckets == [("2", 0), ("4", 0), ("8", 0), ("16", 1), ("32", 1), ("+Inf", 1)]
    assert export.log2_buckets({}) == ([("2", 0), ("+Inf", 0)], 0, 0.0)
    with pytest.raises(ValueError):
        export.log2_buckets({64: 1})


def test_histogram_maps_become_prometheus_histograms():
    hist = fake(HashMap, "lat_hist", U32, U64, [(0, 1), (1, 2), (2, 2)])
    c = export.MapCollector({"lat_hist": hist}, "t")
    s = samples(c)
    assert s[("lcc_t_lat_hist_bucket", (("le", "2"),))] == 1
    assert s[("lcc_t_lat_hist_bucket", (("le", "8"),))] == 5
    assert s[("lcc_t_lat_hist_bucket", (("le", "+Inf"),))] == 5
    assert s[("lcc_t_lat_hist_count", ())] == 5
    assert s[("lcc_t_lat_hist_sum", ())] == 16.5
    # buckets never vanish between scrapes: the highest slot seen stays
    hist.items = lambda: [(0, 1)]
    s = samples(c)
    assert s[("lcc_t_lat_hist_bucket", (("le", "8"),))] == 1


def test_struct_keys_with_a_slot_give_one_histogram_per_label_set():
    key_t = struct("hk", ("comm", COMM), ("slot", U32))
    m = fake(HashMap, "by_comm", key_t, U64, [
        ({"comm": "a", "slot": 0}, 3), ({"comm": "a", "slot": 2}, 1),
        ({"comm": "b", "slot": 1}, 4)])
    s = samples(export.MapCollector({"by_comm": m}, "t"))
    assert s[("lcc_t_by_comm_bucket", (("comm", "a"), ("le", "2")))] == 3
    assert s[("lcc_t_by_comm_bucket", (("comm", "a"), ("le", "8")))] == 4
    assert s[("lcc_t_by_comm_bucket", (("comm", "b"), ("le", "2")))] == 0
    assert s[("lcc_t_by_comm_count", (("comm", "b"),))] == 4


# -- counters, gauges, per-CPU, buffers ---------------------------------------------------------

def test_hash_and_array_maps_become_counters_labelled_by_key():
    calls = fake(HashMap, "calls", PROC_KEY, U64, [({"pid": 1, "comm": "init"}, 5),
                                                  ({"pid": 7, "comm": "sh"}, 2)])
    arr = fake(ArrayMap, "counts", U32, U64, [(0, 0), (1, 9), (2, 0)])
    s = samples(export.MapCollector({"calls": calls, "counts": arr}, "mytool"))
    assert s == {
        ("lcc_mytool_calls_total", (("comm", "init"), ("pid", "1"))): 5,
        ("lcc_mytool_calls_total", (("comm", "sh"), ("pid", "7"))): 2,
        ("lcc_mytool_counts_total", (("key", "1"),)): 9,  # zero entries left out
    }


def test_struct_values_give_one_metric_per_integer_member():
    val_t = struct("v", ("bytes", U64), ("packets", U32), ("name", COMM))
    m = fake(HashMap, "flows", U32, val_t, [(1, {"bytes": 100, "packets": 2, "name": "x"})])
    s = samples(export.MapCollector({"flows": m}, "t"))
    assert s == {("lcc_t_flows_bytes_total", (("key", "1"),)): 100,
                 ("lcc_t_flows_packets_total", (("key", "1"),)): 2}
    conf = export.ExportConfig(maps={"flows": export.MapConfig(
        name="flow_bytes", type="gauge", value="bytes", help="bytes per flow")})
    fams = list(export.MapCollector({"flows": m}, "t", conf).collect())
    assert [(f.name, f.type, f.documentation) for f in fams] == [
        ("flow_bytes", "gauge", "bytes per flow")]


def test_per_cpu_values_are_summed():
    pc = fake(PerCpuHashMap, "pc", U32, U64, [(1, [1, 2, 3])], ncpus=3)
    val_t = struct("pv", ("n", U64), ("m", U64))
    pa = fake(PerCpuArrayMap, "pa", U32, val_t,
              [(0, [{"n": 1, "m": 0}, {"n": 4, "m": 1}]), (1, [{"n": 0, "m": 0}] * 2)],
              ncpus=2)
    s = samples(export.MapCollector({"pc": pc, "pa": pa}, "t"))
    assert s == {("lcc_t_pc_total", (("key", "1"),)): 6,
                 ("lcc_t_pa_n_total", (("key", "0"),)): 5,
                 ("lcc_t_pa_m_total", (("key", "0"),)): 1}


def test_dropped_labels_sum_their_series_and_maps_can_be_left_out():
    calls = fake(HashMap, "calls", PROC_KEY, U64, [({"pid": 1, "comm": "sh"}, 5),
                                                  ({"pid": 7, "comm": "sh"}, 2)])
    other = fake(HashMap, "other", U32, U64, [(1, 1)])
    conf = export.ExportConfig.from_dict({"defaults": False, "maps": {
        "calls": {"labels": {"pid": False, "comm": "command"}}}})
    s = samples(export.MapCollector({"calls": calls, "other": other}, "t", conf))
    assert s == {("lcc_t_calls_total", (("command", "sh"),)): 7}
    conf = export.ExportConfig.from_dict({"prefix": "ebpf", "tool": "x",
                                          "maps": {"other": {"type": "none"}}})
    s = samples(export.MapCollector({"calls": calls, "other": other}, "t", conf))
    assert {name for name, _ in s} == {"ebpf_x_calls_total"}


def test_buffers_report_delivered_and_lost_events():
    ring = SimpleNamespace(name="events", delivered=12)
    perf = SimpleNamespace(name="out", delivered=3, lost=2)
    s = samples(export.MapCollector({}, "t", buffers=[ring, perf]))
    assert s == {("lcc_t_events_events_total", ()): 12,
                 ("lcc_t_out_events_total", ()): 3,
                 ("lcc_t_out_lost_events_total", ()): 2}


def test_a_map_that_cannot_be_read_is_left_out_of_that_scrape():
    bad = fake(HashMap, "bad", U32, U64, [])

    def fail():
        raise LccError("closed")
    bad.items = fail
    good = fake(HashMap, "good", U32, U64, [(1, 1)])
    s = samples(export.MapCollector({"bad": bad, "good": good}, "t"))
    assert s == {("lcc_t_good_total", (("key", "1"),)): 1}


# -- config ----------------------------------------------------------------------------------

def test_config_from_toml(tmp_path):
    p = tmp_path / "export.toml"
    p.write_text('prefix = "ebpf"\n[maps.calls]\nname = "proc_calls"\ntype = "gauge"\n'
                 'help = "calls"\n[maps.calls.labels]\n'
                 'comm = { name = "command", decoder = "string" }\npid = false\n')
    conf = export.ExportConfig.load(str(p))
    assert conf.prefix == "ebpf" and conf.defaults
    mc = conf.maps["calls"]
    assert (mc.name, mc.type, mc.help) == ("proc_calls", "gauge", "calls")
    assert mc.labels == {"comm": export.LabelConfig("command", "string"), "pid": None}


@pytest.mark.parametrize("data, match", [
    ({"prefx": "x"}, "unknown key prefx"),
    ({"maps": {"m": {"type": "summary"}}}, "unknown type"),
    ({"maps": {"m": {"labels": {"pid": 3}}}}, "must be a name"),
    ({"maps": {"m": 1}}, "must be a table"),
])
def test_bad_configs_say_what_is_wrong(data, match):
    with pytest.raises(LccError, match=match):
        export.ExportConfig.from_dict(data)


def test_config_naming_a_missing_map_or_a_non_histogram_is_refused(tmp_path):
    m = fake(HashMap, "calls", U32, U64, [])
    with pytest.raises(LccError, match="names no map of 't': nope"):
        export.MapCollector({"calls": m}, "t", export.ExportConfig(
            maps={"nope": export.MapConfig()}))
    with pytest.raises(LccError, match="not a log2 histogram"):
        export.MapCollector({"calls": m}, "t", export.ExportConfig(
            maps={"calls": export.MapConfig(type="histogram")}))
    (tmp_path / "bad.toml").write_text("prefix = ")
    with pytest.raises(LccError, match="not valid TOML"):
        export.ExportConfig.load(str(tmp_path / "bad.toml"))


# -- serving -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:9435", ("127.0.0.1", 9435)), (":9000", ("0.0.0.0", 9000)),
    ("9000", ("0.0.0.0", 9000)), ("[::1]:80", ("::1", 80)), ("localhost", ("localhost", 9435)),
])
def test_listen_addresses(text, want):
    assert export.parse_listen(text) == want


def test_bad_listen_addresses():
    for text in ("host:port", "1.2.3.4:70000"):
        with pytest.raises(LccError):
            export.parse_listen(text)


def test_served_metrics_are_read_at_scrape_time():
    m = fake(HashMap, "calls", U32, U64, [(1, 1)])
    server = export.serve(export.MapCollector({"calls": m}, "t"), "127.0.0.1:0")
    try:
        host, port = server.address
        url = f"http://{host}:{port}/metrics"
        assert 'lcc_t_calls_total{key="1"} 1.0' in urllib.request.urlopen(url).read().decode()
        m.items = lambda: [(1, 5)]
        assert 'lcc_t_calls_total{key="1"} 5.0' in urllib.request.urlopen(url).read().decode()
    finally:
        server.close()
        server.close()  # idempotent


def test_missing_prometheus_client_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(LccError, match=r"lcc\[export\]"):
        export.serve(export.MapCollector({}, "t"), "127.0.0.1:0")


def test_the_readme_config_example_works():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    text = readme.split("## Prometheus export", 1)[1].split("```toml\n", 1)[1].split("```")[0]
    conf = export.ExportConfig.from_dict(tomllib.loads(text))
    key_t = struct("ck", ("pid", U32), ("comm", COMM), ("saddr", U32))
    val_t = struct("cv", ("count", U64), ("bytes", U64))
    m = fake(HashMap, "conns", key_t, val_t, [
        ({"pid": 1, "comm": "curl", "saddr": 0x0100007f}, {"count": 2, "bytes": 9}),
        ({"pid": 2, "comm": "curl", "saddr": 0x0100007f}, {"count": 3, "bytes": 9})])
    s = samples(export.MapCollector({"conns": m}, "t", conf))
    assert s == {("tcp_connects_total", (("command", "curl"), ("src", "127.0.0.1"))): 5}
