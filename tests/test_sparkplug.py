"""Sparkplug B decoding: pure state transitions, tested by tables."""

from __future__ import annotations

import pytest

from pue_monitor.collectors import sparkplug as sp
from pue_monitor.collectors.sparkplug import SparkplugDecoder, SparkplugError, parse_topic, point_name

G, N = "plant", "gw-1"
T0 = 1_751_328_000_000  # ms


def topic(kind: str, device: str | None = None) -> str:
    return f"spBv1.0/{G}/{kind}/{N}" + (f"/{device}" if device else "")


def nbirth(bd: int = 3, seq: int = 0, ts: int = T0) -> bytes:
    return sp.encode_payload(
        [
            (sp.BDSEQ_METRIC, None, sp.UINT64, bd),
            (sp.REBIRTH_METRIC, None, sp.BOOLEAN, False),
            ("Flow", 1, sp.DOUBLE, 12.5),
            ("Offset", 2, sp.INT16, -3),
        ],
        ts_ms=ts,
        seq=seq,
        units={"Flow": "m3/h"},
    )


def dbirth(seq: int, ts: int = T0) -> bytes:
    return sp.encode_payload(
        [("Supply Temperature", 10, sp.FLOAT, 20.5), ("Fan Speed", 11, sp.INT32, -1)],
        ts_ms=ts,
        seq=seq,
        units={"Supply Temperature": "degC"},
    )


def ddata(seq: int, *metrics: tuple[str | None, int | None, int, float], ts: int = T0 + 5000) -> bytes:
    return sp.encode_payload(list(metrics), ts_ms=ts, seq=seq)


def born() -> SparkplugDecoder:
    d = SparkplugDecoder(rebirth_holdoff=10.0)
    d.feed(topic("NBIRTH"), nbirth(), arrival=0.0, now=0.0)
    d.feed(topic("DBIRTH", "crah-1"), dbirth(1), arrival=0.0, now=0.0)
    return d


def test_births_define_names_units_and_values() -> None:
    d = SparkplugDecoder()
    out = d.feed(topic("NBIRTH"), nbirth(), arrival=1.0, now=0.0)
    assert out.born == [None] and not out.rebirth
    # bdSeq and Node Control metrics are not measurements
    assert [(v.device, v.name, v.value, v.ts, v.unit) for v in out.values] == [
        (None, "Flow", 12.5, T0 / 1000, "m3/h"),
        (None, "Offset", -3.0, T0 / 1000, ""),
    ]
    out = d.feed(topic("DBIRTH", "crah-1"), dbirth(1), arrival=1.0, now=0.0)
    assert out.born == ["crah-1"]
    assert [(v.device, v.name, v.value, v.unit) for v in out.values] == [
        ("crah-1", "Supply Temperature", 20.5, "degC"),
        ("crah-1", "Fan Speed", -1.0, ""),
    ]
    assert d.is_alive(G, N) and d.is_alive(G, N, "crah-1") and not d.is_alive(G, N, "crah-2")


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        # alias only, as DDATA may send
        ([(None, 10, sp.FLOAT, 21.25)], [("Supply Temperature", 21.25)]),
        # name only
        ([("Fan Speed", None, sp.INT32, 1200)], [("Fan Speed", 1200.0)]),
        # datatype omitted in data: the birth's datatype gives the sign back (Int32 -5)
        ([(None, 11, 0, 0xFFFF_FFFB)], [("Fan Speed", -5.0)]),
        # alias of a node metric sent on a device topic: not this device's → rebirth
        ([(None, 1, sp.DOUBLE, 1.0)], []),
        # unknown alias → skipped (and a rebirth)
        ([(None, 99, sp.FLOAT, 1.0), (None, 10, sp.FLOAT, 19.0)], [("Supply Temperature", 19.0)]),
    ],
)
def test_ddata_by_alias(metrics, expected) -> None:
    d = born()
    out = d.feed(topic("DDATA", "crah-1"), ddata(2, *metrics), arrival=1.0, now=1.0)
    assert [v.name for v in out.values] == [name for name, _ in expected]
    assert [v.value for v in out.values] == pytest.approx([value for _, value in expected])
    assert all(v.ts == (T0 + 5000) / 1000 for v in out.values)
    assert out.rebirth == (len(expected) < len(metrics))


@pytest.mark.parametrize(
    ("datatype", "raw", "value"),
    [
        (sp.INT8, 0xFF, -1.0),
        (sp.INT8, 0x7F, 127.0),
        (sp.INT16, 0x8000, -32768.0),
        (sp.INT32, 0xFFFF_FFFF, -1.0),
        (sp.INT64, 0xFFFF_FFFF_FFFF_FFFE, -2.0),
        (sp.UINT32, 0xFFFF_FFFF, 4_294_967_295.0),
        (sp.UINT64, 2**63, 2.0**63),
        (sp.BOOLEAN, 1, 1.0),
        (sp.DOUBLE, 1e300, 1e300),
    ],
)
def test_numeric_datatypes(datatype, raw, value) -> None:
    d = SparkplugDecoder()
    payload = sp.encode_payload([("x", None, datatype, raw)], ts_ms=T0, seq=0)
    (v,) = d.feed(topic("NBIRTH"), payload, arrival=0.0, now=0.0).values
    assert v.value == value


def test_seq_wraps_at_256_without_rebirth() -> None:
    d = SparkplugDecoder()
    d.feed(topic("NBIRTH"), nbirth(seq=253), arrival=0.0, now=0.0)
    seqs = [254, 255, 0, 1, 2]
    outs = [d.feed(topic("NDATA"), ddata(s, (None, 1, sp.DOUBLE, s)), arrival=0.0, now=0.0) for s in seqs]
    assert [o.rebirth for o in outs] == [False] * 5
    assert [o.values[0].value for o in outs] == seqs


@pytest.mark.parametrize(
    ("seqs", "now", "rebirths"),
    [
        ([1, 2, 4], [0, 0, 0], [False, False, True]),  # 3 missing
        ([1, 3, 6], [0, 0, 1], [False, True, False]),  # second gap within the holdoff
        ([1, 3, 6], [0, 0, 11], [False, True, True]),  # after the holdoff: ask again
        ([255], [0], [True]),  # 255 after NBIRTH seq 0 is a gap, not a wrap
    ],
)
def test_seq_gap_requests_rebirth_with_holdoff(seqs, now, rebirths) -> None:
    d = SparkplugDecoder(rebirth_holdoff=10.0)
    d.feed(topic("NBIRTH"), nbirth(), arrival=0.0, now=0.0)
    got = []
    for s, n in zip(seqs, now, strict=True):
        out = d.feed(topic("NDATA"), ddata(s, (None, 1, sp.DOUBLE, 7.0)), arrival=0.0, now=n)
        assert [v.value for v in out.values] == [7.0]  # values of known aliases are still good
        got.append(out.rebirth)
    assert got == rebirths


def test_duplicate_seq_is_a_redelivery() -> None:
    d = born()
    first = d.feed(topic("DDATA", "crah-1"), ddata(2, (None, 10, sp.FLOAT, 20.0)), arrival=0, now=0)
    again = d.feed(topic("DDATA", "crah-1"), ddata(2, (None, 10, sp.FLOAT, 20.0)), arrival=0, now=0)
    assert len(first.values) == 1 and again.duplicate and again.values == [] and not again.rebirth


def test_data_before_birth_requests_rebirth() -> None:
    d = SparkplugDecoder()
    out = d.feed(topic("DDATA", "crah-1"), ddata(5, (None, 10, sp.FLOAT, 20.0)), arrival=0, now=0)
    assert out.rebirth and out.values == [] and "before its NBIRTH" in (out.problem or "")
    # a rebirth then resyncs everything
    d.feed(topic("NBIRTH"), nbirth(), arrival=0, now=1)
    d.feed(topic("DBIRTH", "crah-1"), dbirth(1), arrival=0, now=1)
    out = d.feed(topic("DDATA", "crah-1"), ddata(2, (None, 10, sp.FLOAT, 22.0)), arrival=0, now=1)
    assert [v.value for v in out.values] == [22.0] and not out.rebirth


def test_ndeath_with_matching_bdseq_kills_node_and_devices() -> None:
    d = born()
    stale = d.feed(
        topic("NDEATH"), sp.encode_payload([("bdSeq", None, sp.UINT64, 2)], ts_ms=0, seq=None), arrival=0, now=0
    )
    assert stale.ignored and d.is_alive(G, N)  # a will from an older session
    out = d.feed(
        topic("NDEATH"), sp.encode_payload([("bdSeq", None, sp.UINT64, 3)], ts_ms=0, seq=None), arrival=0, now=0
    )
    assert out.died == [None] and not d.is_alive(G, N) and not d.is_alive(G, N, "crah-1")
    late = d.feed(topic("DDATA", "crah-1"), ddata(2, (None, 10, sp.FLOAT, 20.0)), arrival=0, now=0)
    assert late.values == [] and late.rebirth  # stale: nothing emitted


def test_ddeath_marks_only_that_device() -> None:
    d = born()
    out = d.feed(topic("DDEATH", "crah-1"), ddata(2), arrival=0, now=0)
    assert out.died == ["crah-1"] and d.is_alive(G, N) and not d.is_alive(G, N, "crah-1")
    out = d.feed(topic("DDATA", "crah-1"), ddata(3, (None, 10, sp.FLOAT, 20.0)), arrival=0, now=0)
    assert out.values == []
    out = d.feed(topic("NDATA"), ddata(4, (None, 1, sp.DOUBLE, 3.0)), arrival=0, now=20)
    assert [v.value for v in out.values] == [3.0]


def test_arrival_time_when_no_timestamps() -> None:
    d = SparkplugDecoder()
    d.feed(topic("NBIRTH"), nbirth(), arrival=0, now=0)
    payload = sp.pb.Payload()
    payload.seq = 1
    m = payload.metrics.add()
    m.alias = 1
    m.double_value = 4.5
    (v,) = d.feed(topic("NDATA"), payload.SerializeToString(), arrival=1234.5, now=0).values
    assert (v.value, v.ts) == (4.5, 1234.5)


@pytest.mark.parametrize(
    ("t", "payload", "match"),
    [
        ("spBv1.0/g/NDATA", b"", "not a Sparkplug B topic"),
        ("spBv1.0/g/DDATA/n", b"", "needs device"),
        ("spBv1.0/g/NDATA/n/d", b"", "takes no device"),
        ("spBv2.0/g/NDATA/n", b"", "not a Sparkplug B topic"),
        (topic("NDATA"), b"\xff\xff\xff\xff", "bad protobuf"),
        (topic("NBIRTH"), sp.encode_payload([("x", None, sp.DOUBLE, 1.0)], ts_ms=T0, seq=None), "without seq"),
    ],
)
def test_malformed_messages_raise(t, payload, match) -> None:
    with pytest.raises(SparkplugError, match=match):
        SparkplugDecoder().feed(t, payload, arrival=0, now=0)


def test_commands_and_state_are_ignored() -> None:
    d = SparkplugDecoder()
    assert d.feed(topic("NCMD"), sp.rebirth_command(T0), arrival=0, now=0).ignored
    assert sp.is_rebirth_command(sp.rebirth_command(T0))
    assert not sp.is_rebirth_command(b"\xff\xff")
    assert parse_topic(topic("DDATA", "x")) == sp.SparkplugTopic(G, "DDATA", N, "x")


@pytest.mark.parametrize(
    ("metric", "point"),
    [
        ("Supply Temperature", "supply_temperature"),
        ("Inputs/Temp 1", "inputs_temp_1"),
        ("kWh.total", "kwh.total"),
        ("///", "metric"),
    ],
)
def test_point_names(metric, point) -> None:
    assert point_name(metric) == point
