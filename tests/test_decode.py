"""Register decoding, every type in every word/byte order, against hand-computed registers.

Orders: (word_order, byte_order). "big/big" is the Modbus default (ABCD);
"little" word order reverses the registers (CDAB for 32 bit); "little" byte order
swaps the two bytes inside each register (BADC).
"""

from __future__ import annotations

import math
import random

import pytest

from pue_monitor.collectors.decode import (
    DATA_TYPES,
    BlockDecoder,
    decode,
    encode,
    pf_four_quadrant,
    raw_bits,
    register_count,
    type_max_code,
)

BB, LB, BL, LL = ("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")

# (type, value, {order: registers}) — registers written out by hand from the IEEE-754 /
# two's-complement bytes, e.g. f32 -123.456 = C2 F6 E9 79.
CASES = [
    ("u16", 1234, {BB: [0x04D2], LB: [0x04D2], BL: [0xD204], LL: [0xD204]}),
    ("i16", -2, {BB: [0xFFFE], LB: [0xFFFE], BL: [0xFEFF], LL: [0xFEFF]}),
    ("u32", 0x12345678, {BB: [0x1234, 0x5678], LB: [0x5678, 0x1234], BL: [0x3412, 0x7856], LL: [0x7856, 0x3412]}),
    ("i32", -2, {BB: [0xFFFF, 0xFFFE], LB: [0xFFFE, 0xFFFF], BL: [0xFFFF, 0xFEFF], LL: [0xFEFF, 0xFFFF]}),
    # below 2**53, so the float64 a reading carries holds it exactly
    (
        "u64",
        0x001F2E3D4C5B6A79,
        {
            BB: [0x001F, 0x2E3D, 0x4C5B, 0x6A79],
            LB: [0x6A79, 0x4C5B, 0x2E3D, 0x001F],
            BL: [0x1F00, 0x3D2E, 0x5B4C, 0x796A],
            LL: [0x796A, 0x5B4C, 0x3D2E, 0x1F00],
        },
    ),
    (
        "i64",
        -3,
        {
            BB: [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFD],
            LB: [0xFFFD, 0xFFFF, 0xFFFF, 0xFFFF],
            BL: [0xFFFF, 0xFFFF, 0xFFFF, 0xFDFF],
            LL: [0xFDFF, 0xFFFF, 0xFFFF, 0xFFFF],
        },
    ),
    ("f32", -123.456, {BB: [0xC2F6, 0xE979], LB: [0xE979, 0xC2F6], BL: [0xF6C2, 0x79E9], LL: [0x79E9, 0xF6C2]}),
    (
        "f64",
        math.pi,
        {
            BB: [0x4009, 0x21FB, 0x5444, 0x2D18],
            LB: [0x2D18, 0x5444, 0x21FB, 0x4009],
            BL: [0x0940, 0xFB21, 0x4454, 0x182D],
            LL: [0x182D, 0x4454, 0xFB21, 0x0940],
        },
    ),
]

PARAMS = [(t, v, order, regs) for t, v, table in CASES for order, regs in table.items()]


def test_every_type_and_order_is_covered():
    assert {t for t, _, _ in CASES} == set(DATA_TYPES)
    assert all(len(table) == 4 for _, _, table in CASES)


@pytest.mark.parametrize(
    ("dtype", "value", "order", "regs"), PARAMS, ids=[f"{t}-{o[0]}word-{o[1]}byte" for t, _, o, _ in PARAMS]
)
def test_decode_hand_computed(dtype, value, order, regs):
    word, byte = order
    got = decode(regs, dtype, word_order=word, byte_order=byte)
    if dtype == "f32":
        assert got == pytest.approx(value, rel=1e-7)
    else:
        assert got == value
    assert register_count(dtype) == len(regs)


@pytest.mark.parametrize(
    ("dtype", "value", "order", "regs"), PARAMS, ids=[f"{t}-{o[0]}word-{o[1]}byte" for t, _, o, _ in PARAMS]
)
def test_encode_is_inverse(dtype, value, order, regs):
    word, byte = order
    assert encode(value, dtype, word_order=word, byte_order=byte) == regs


def test_scale_applies_to_fixed_point():
    # ABB-style energy: u64 in 0.01 kWh; 123456789 raw = 1,234,567.89 kWh
    regs = [0, 0, 0x075B, 0xCD15]
    assert decode(regs, "u64", scale=0.01) == pytest.approx(1_234_567.89)
    assert encode(1_234_567.89, "u64", scale=0.01) == regs


def test_wrong_register_count_is_an_error():
    with pytest.raises(ValueError, match="f32 needs 2 registers"):
        decode([1, 2, 3], "f32")


def test_nan_decodes_as_nan():
    assert math.isnan(decode([0x7FC0, 0x0000], "f32"))


# ------------------------------------------------------------- not-available codes


@pytest.mark.parametrize(
    ("dtype", "value", "order", "regs"), PARAMS, ids=[f"{t}-{o[0]}word-{o[1]}byte" for t, _, o, _ in PARAMS]
)
def test_raw_bits_undoes_word_and_byte_order(dtype, value, order, regs):
    word, byte = order
    big = encode(value, dtype)  # the value's registers in Modbus default order
    expected = int("".join(f"{r:04x}" for r in big), 16)
    assert raw_bits(regs, word_order=word, byte_order=byte) == expected


def test_type_max_codes_are_abb_not_available_codes():
    # ABB A43/A44 manual 9.3: unsigned -> FFFF in all registers; signed -> 7FFF, 7FFFFFFF, ...
    assert type_max_code("u16") == 0xFFFF
    assert type_max_code("u32") == 0xFFFF_FFFF
    assert type_max_code("u64") == 0xFFFF_FFFF_FFFF_FFFF
    assert type_max_code("i16") == 0x7FFF
    assert type_max_code("i32") == 0x7FFF_FFFF
    assert type_max_code("i64") == 0x7FFF_FFFF_FFFF_FFFF
    assert type_max_code("f32") is None and type_max_code("f64") is None
    # what decoding without the check would book: 1.8e17 kWh for an ABB u64 in 0.01 kWh
    assert decode([0xFFFF] * 4, "u64", scale=0.01) == pytest.approx(1.8446744073709552e17)


# ----------------------------------------------------- Schneider four-quadrant PF


@pytest.mark.parametrize(
    ("register", "pf"),
    [
        (0.0, 0.0),
        (0.92, 0.92),  # quadrant 1: PF = register
        (1.0, 1.0),
        (-0.85, -0.85),  # quadrant 2: -1..0, PF = register
        (-1.25, -0.75),  # quadrant 3: register -2..-1, PF = -2 - register
        (-2.0, 0.0),
        (1.2, 0.8),  # quadrant 4: register +1..+2, PF = 2 - register
        (1.95, 0.05),
        (2.0, 0.0),
    ],
)
def test_pf_four_quadrant_as_the_iem3000_manual(register, pf):
    assert pf_four_quadrant(register) == pytest.approx(pf, abs=1e-12)


def test_pf_four_quadrant_outside_the_range_is_nan():
    assert math.isnan(pf_four_quadrant(2.5))
    assert math.isnan(pf_four_quadrant(-3.0))
    assert math.isnan(pf_four_quadrant(math.inf))
    assert math.isnan(pf_four_quadrant(math.nan))


# ------------------------------------------------ whole blocks (the collector's hot path)


def _block(order, *, gap: int = 0):
    """Every case of one order laid out in one block, ``gap`` unused registers between values."""
    regs: list[int] = []
    fields, values = [], []
    for t, v, table in CASES:
        regs += [0xABCD] * gap
        fields.append((len(regs), t, *order))
        values.append(v)
        regs += table[order]
    return regs, fields, values


@pytest.mark.parametrize("order", [BB, LB, BL, LL], ids=["big-big", "little-big", "big-little", "little-little"])
@pytest.mark.parametrize("gap", [0, 3])
def test_block_decoder_every_type_in_one_block(order, gap):
    regs, fields, values = _block(order, gap=gap)
    got = BlockDecoder(len(regs), fields)(regs)
    assert len(got) == len(values)
    for (off, t, _, _), g, v in zip(fields, got, values, strict=True):
        if t == "f32":
            assert g == pytest.approx(v, rel=1e-7)
        else:
            assert g == v, t
        # the same number pymodbus' conversion gives for the value's own registers
        assert float(g) == decode(regs[off : off + register_count(t)], t, word_order=order[0], byte_order=order[1])


def test_block_decoder_mixed_orders_and_types():
    # all four orders of every type in one block, in an order unlike their offsets
    regs: list[int] = []
    fields, values = [], []
    for order in (LB, BB, LL, BL):
        for t, v, table in CASES:
            fields.append((len(regs), t, *order))
            values.append(v)
            regs += table[order]
    fields.reverse()
    values.reverse()
    got = BlockDecoder(len(regs), fields)(regs)
    for (_, t, _, _), g, v in zip(fields, got, values, strict=True):
        assert g == (pytest.approx(v, rel=1e-7) if t == "f32" else v)


def test_block_decoder_agrees_with_decode_on_random_registers():
    """Any bit pattern (NaN, infinities, negative zero, extreme integers) as pymodbus decodes it."""
    rnd = random.Random(13)
    orders = [BB, LB, BL, LL]
    for _ in range(400):
        fields, at = [], 0
        for _ in range(rnd.randint(1, 6)):
            at += rnd.choice([0, 0, 1])
            t = rnd.choice(list(DATA_TYPES))
            order = rnd.choice(orders) if rnd.random() < 0.5 else BB
            fields.append((at, t, *order))
            at += register_count(t)
        regs = [rnd.choice([0, 0xFFFF, 0x7FC0, 0x7F80, 0x8000, rnd.randrange(0x10000)]) for _ in range(at)]
        for (off, t, w, b), g in zip(fields, BlockDecoder(at, fields)(regs), strict=True):
            want = decode(regs[off : off + register_count(t)], t, word_order=w, byte_order=b)
            assert (math.isnan(want) and math.isnan(g)) or float(g) == want, (t, w, b, regs[off:])


def test_block_decoder_errors():
    with pytest.raises(ValueError, match="f64 at offset 2 does not fit a block of 4 registers"):
        BlockDecoder(4, [(2, "f64", "big", "big")])
    with pytest.raises(ValueError, match="block of 4 registers, got 2"):
        BlockDecoder(4, [(0, "f32", "big", "big")])([1, 2])
