"""Register decoding: pure functions, tested by tables.

:func:`decode` and :func:`encode` convert one value with pymodbus (``convert_from_registers``);
what pymodbus does not cover is byte order *inside* each 16-bit register ("byte swap", seen
on some meters), which we apply before handing the registers over.

The collector's hot path decodes a whole register block (one request's answer) at once with
:class:`BlockDecoder`: one ``struct`` call for the block when every value in it has the same
order (the usual case), one precompiled ``struct`` call per value otherwise; the results are
the same numbers as :func:`decode`'s (tested against it for every type and order).
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Callable, Sequence
from typing import Literal

from pymodbus.client.mixin import ModbusClientMixin

DT = ModbusClientMixin.DATATYPE

#: data type name in profiles -> (pymodbus type, register count)
DATA_TYPES: dict[str, tuple[DT, int]] = {
    "u16": (DT.UINT16, 1),
    "i16": (DT.INT16, 1),
    "u32": (DT.UINT32, 2),
    "i32": (DT.INT32, 2),
    "u64": (DT.UINT64, 4),
    "i64": (DT.INT64, 4),
    "f32": (DT.FLOAT32, 2),
    "f64": (DT.FLOAT64, 4),
}

Order = Literal["big", "little"]


def register_count(data_type: str) -> int:
    """Number of 16-bit registers a value of ``data_type`` occupies."""
    return DATA_TYPES[data_type][1]


def _swap_bytes(registers: Sequence[int]) -> list[int]:
    return [((r & 0xFF) << 8) | (r >> 8) for r in registers]


def decode(
    registers: Sequence[int],
    data_type: str,
    *,
    word_order: Order = "big",
    byte_order: Order = "big",
    scale: float = 1.0,
) -> float:
    """Decode one value from its registers and apply ``scale``.

    ``word_order`` is the order of the 16-bit registers (big = most significant
    first), ``byte_order`` the order of the two bytes inside each register.
    The result is a float64: 64-bit integers above 2**53 (9e15 Wh) lose their last digits.
    """
    dtype, count = DATA_TYPES[data_type]
    if len(registers) != count:
        raise ValueError(f"{data_type} needs {count} registers, got {len(registers)}")
    regs = _swap_bytes(registers) if byte_order == "little" else list(registers)
    value = ModbusClientMixin.convert_from_registers(regs, dtype, word_order=word_order)
    assert isinstance(value, int | float)
    return float(value) * scale if scale != 1.0 else float(value)


def encode(
    value: float,
    data_type: str,
    *,
    word_order: Order = "big",
    byte_order: Order = "big",
    scale: float = 1.0,
) -> list[int]:
    """Inverse of :func:`decode`: the registers a device would serve for ``value``.

    Integer types are rounded to the nearest step of ``scale`` (and must fit).
    """
    dtype, _ = DATA_TYPES[data_type]
    raw: int | float = value if scale == 1.0 else value / scale
    if not data_type.startswith("f"):
        if not math.isfinite(raw):
            raise ValueError(f"cannot encode {value!r} as {data_type}")
        raw = round(raw)
    regs = ModbusClientMixin.convert_to_registers(raw, dtype, word_order=word_order)
    return _swap_bytes(regs) if byte_order == "little" else regs


def raw_bits(registers: Sequence[int], *, word_order: Order = "big", byte_order: Order = "big") -> int:
    """The registers as one unsigned integer (most significant word first after ordering).

    "Not available" codes are bit patterns (0xFFFF_FFFF, 0x7FFF_FFFF), compared here, before
    the value is interpreted as signed, float or scaled.
    """
    regs = _swap_bytes(registers) if byte_order == "little" else list(registers)
    if word_order == "little":
        regs.reverse()
    out = 0
    for r in regs:
        out = (out << 16) | (r & 0xFFFF)
    return out


def type_max_code(data_type: str) -> int | None:
    """The largest value of an integer type as a bit pattern: 0xFF.. unsigned, 0x7FFF.. signed.

    ABB's A/B-series meters answer it for a quantity they do not measure (see the
    ``abb-b-series`` profile); None for float types (a float's "not available" is NaN).
    """
    if data_type.startswith("f"):
        return None
    bits = 16 * DATA_TYPES[data_type][1]
    return (1 << (bits - 1)) - 1 if data_type.startswith("i") else (1 << bits) - 1


def pf_four_quadrant(register_value: float) -> float:
    """Power factor from Schneider's four-quadrant PF float register (iEM3000, PM5xxx).

    The register carries sign and quadrant in one float in -2..+2: in -1..+1 it is the PF
    itself; above +1 (quadrant 4, leading) PF = 2 - value; below -1 (quadrant 3) PF = -2 - value.
    Source: Schneider Electric iEM3100/iEM3200/iEM3300 user manual DOCA0005EN-04, "Power factor
    register format" (p. 109). A value outside -2..+2 is not a power factor: NaN.
    """
    v = register_value
    if not math.isfinite(v) or abs(v) > 2.0:
        return math.nan
    if v > 1.0:
        return 2.0 - v
    if v < -1.0:
        return -2.0 - v
    return v


#: data type name -> ``struct`` format character (standard sizes)
_STRUCT_CHARS = {"u16": "H", "i16": "h", "u32": "I", "i32": "i", "u64": "Q", "i64": "q", "f32": "f", "f64": "d"}


def _byte_order_of(count: int, word_order: Order, byte_order: Order) -> tuple[int, ...]:
    """Where each byte of the big-endian value sits in the wire bytes of its ``count`` registers."""
    out: list[int] = []
    for k in range(count):  # k = 0: the most significant register
        src = k if word_order == "big" else count - 1 - k
        out += (2 * src, 2 * src + 1) if byte_order == "big" else (2 * src + 1, 2 * src)
    return tuple(out)


class BlockDecoder:
    """Decodes every value of one register block (one request's answer) at once.

    ``fields`` are (register offset in the block, data type, word order, byte order); the
    decoder returns their raw values (int or float, before any scale) in that order, the same
    numbers :func:`decode` gives for each value's registers. The block's registers are packed to
    bytes once; values are read from them with ``struct``: the whole block in one call when every
    value has the same byte layout (big/big, Modbus' default, or little/little, which is the
    value's bytes reversed), else one precompiled call per value.
    """

    __slots__ = ("_fields", "_pack", "_whole", "count")

    def __init__(self, count: int, fields: Sequence[tuple[int, str, Order, Order]]) -> None:
        self.count = count
        self._pack = struct.Struct(f">{count}H").pack
        spans = sorted((off, i) for i, (off, _, _, _) in enumerate(fields))
        layouts = {_byte_order_of(DATA_TYPES[t][1], w, b) for _, t, w, b in fields}
        self._whole: Callable[[bytes], tuple[int | float, ...]] | None = None
        self._fields: list[tuple[int, tuple[int, ...] | None, Callable[[bytes, int], tuple[int | float]]]] = []
        for off, t, _, _ in fields:
            n = DATA_TYPES[t][1]
            if off < 0 or off + n > count:
                raise ValueError(f"a {t} at offset {off} does not fit a block of {count} registers")
        in_order = [i for _, i in spans] == list(range(len(fields)))
        overlap = any(
            fields[i][0] + DATA_TYPES[fields[i][1]][1] > fields[j][0] for (_, i), (_, j) in itertools.pairwise(spans)
        )
        if len(layouts) == 1 and in_order and not overlap:
            layout = next(iter(layouts))
            big = layout == tuple(range(len(layout)))
            if big or layout == tuple(reversed(range(len(layout)))):
                # little/little is every byte reversed: the same bytes read little-endian
                fmt, at = ">" if big else "<", 0
                for off, t, _, _ in fields:
                    fmt += (f"{2 * (off - at)}x" if off > at else "") + _STRUCT_CHARS[t]
                    at = off + DATA_TYPES[t][1]
                self._whole = struct.Struct(fmt).unpack_from
                return
        for off, t, w, b in fields:
            n = DATA_TYPES[t][1]
            layout = _byte_order_of(n, w, b)
            if layout == tuple(range(2 * n)):
                self._fields.append((2 * off, None, struct.Struct(">" + _STRUCT_CHARS[t]).unpack_from))
            elif layout == tuple(reversed(range(2 * n))):
                self._fields.append((2 * off, None, struct.Struct("<" + _STRUCT_CHARS[t]).unpack_from))
            else:
                perm = tuple(2 * off + i for i in layout)
                self._fields.append((0, perm, struct.Struct(">" + _STRUCT_CHARS[t]).unpack_from))

    def __call__(self, registers: Sequence[int]) -> tuple[int | float, ...]:
        if len(registers) != self.count:
            raise ValueError(f"block of {self.count} registers, got {len(registers)}")
        buf = self._pack(*registers)
        if self._whole is not None:
            return self._whole(buf)
        out: list[int | float] = []
        for at, perm, unpack in self._fields:
            if perm is None:
                out.append(unpack(buf, at)[0])
            else:
                out.append(unpack(bytes(buf[i] for i in perm), 0)[0])
        return tuple(out)
