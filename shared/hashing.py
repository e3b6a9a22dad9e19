"""Row and key hashes, and the order-independent table fingerprint built from them.

The hashes decide what the loader MERGEs and what the reconciler calls equal, so the bytes they
are computed from are a specification, not an implementation detail. Changing any rule below
changes hashes of unchanged rows (a full reload everywhere): bump ``ENCODING_VERSION`` and treat it
as a migration. Rules may only be *added* (for a type that used to be refused) within a version.

Canonical encoding, version 1
=============================

Each value becomes a canonical text, or NULL:

================================  ==========================================================
Python value                      canonical text
================================  ==========================================================
``None``                          NULL (framed as ``~``, distinct from every text incl. ``''``)
``bool``                          ``true`` / ``false``
``int``                           decimal digits, ``-`` for negatives
``decimal.Decimal``               plain notation, never an exponent; trailing fractional zeros
                                  and a trailing ``.`` stripped; ``-0`` is ``0``. So 1.50, 1.5
                                  and 1.500000000 are equal, as BigQuery renders NUMERIC.
                                  NaN and infinities are refused (SQL Server has none).
``float``                         ``repr()``, the shortest text that round-trips, with a
                                  trailing ``.0`` removed: ``2.0`` is ``2`` like the int 2,
                                  ``-0.0`` is ``0``, ``1.5``, ``1e+16``, ``1e-05``; ``NaN``,
                                  ``Infinity``, ``-Infinity``.
                                  A float32 (SQL Server ``real``) must reach us widened to a
                                  float64 the same way by every driver, i.e. exactly (0.1f is
                                  0.10000000149011612), never re-parsed from its short decimal.
``str``                           Unicode NFC, otherwise verbatim: trailing spaces count and
                                  ``''`` is not NULL. Unpaired surrogates are refused.
``bytes``/``bytearray``/          lowercase hex
``memoryview``
``uuid.UUID``                     lowercase hyphenated (``str(uuid)``)
``datetime.datetime`` naive       ``YYYY-MM-DDTHH:MM:SS.ffffff`` (always 6 fractional digits)
``datetime.datetime`` aware       converted to UTC, same form plus ``Z``
``datetime.date``                 ``YYYY-MM-DD``
``datetime.time`` naive           ``HH:MM:SS.ffffff``; an aware time is refused (no instant)
anything else                     refused with ``HashingError`` naming the type
================================  ==========================================================

Texts carry no type tag: a column has a single type, and untagged texts are what SQL can
rebuild from a loaded value. So 1, 1.0, Decimal('1') and '1' share a text, as do a UUID and its
``str()``, which is how a STRING column stores it.

Subclasses are encoded as their nearest listed base (an ``IntEnum`` as an int, a ``datetime``
subclass as a datetime, never as a date).

A row (any sequence of values) is encoded by framing each value, NULL as ``~`` and a text as
``<n>:<text>`` where ``n`` is the number of Unicode code points in the text, and concatenating the
frames with no separator, as UTF-8. The frames make the encoding injective: ``("a", "b")``,
``("ab", None)`` and ``("ab",)`` all differ.

Hash algorithm ``sha256-128``: SHA-256 of the encoded row, first 16 bytes, as 32 lowercase hex
characters. SHA-256 because BigQuery has ``SHA256()``, so the same hash can be recomputed in SQL.
The key hash is the hash of the row made of the key values in key order; the row hash is the hash
of all values in source column order.

Table fingerprint
=================

Order independent, mergeable across files and computable in BigQuery over the ``_row_hash``
column: ``count`` (``row_count`` in SQL); ``xor60``, the XOR of the first 15 hex digits (60 bits,
so it fits a positive INT64) of every row hash; ``sum32``, the sum of hex digits 16-23 (32 bits),
which also catches a row present twice (XOR alone cancels pairs). ``sum32`` stays exact in an INT64
for up to 2**31 rows.
"""
from __future__ import annotations

import datetime
import decimal
import hashlib
import re
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.identifiers import quote_bigquery
from shared.schema import ROW_HASH_COLUMN

ENCODING_VERSION = 1
HASH_ALGORITHM = "sha256-128"

_NULL_FRAME = "~"
_FLOAT_SPECIALS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_ROW_HASH = re.compile(r"[0-9a-f]{32}")
_QUOTED_COLUMN = re.compile(r"`[^`\\]+`")
_XOR_BITS = 60
_SUM_BITS = 32


class HashingError(TypeError):
    """A value has no canonical encoding; the extractor quarantines its row."""


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _decimal_text(value: decimal.Decimal) -> str:
    # format(..., "f") never rounds, so no decimal context can change the text.
    if not value.is_finite():
        raise HashingError(f"cannot hash non-finite Decimal {value}")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _float_text(value: float) -> str:
    # repr() ends in ".0" exactly for integral values below 1e16 (fixed notation); stripping it
    # renders 2.0 like the int 2. From 1e16 on repr() uses exponent notation ("1e+16").
    text = float.__repr__(value)
    if text.endswith(".0"):
        return "0" if text == "-0.0" else text[:-2]
    return _FLOAT_SPECIALS.get(text, text)


def _str_text(value: str) -> str:
    text = str.__str__(value)  # an exact str even for a subclass (e.g. StrEnum)
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def _naive_datetime_text(value: datetime.datetime) -> str:
    # isoformat() omits a zero microsecond; padding is cheaper than timespec="microseconds".
    text = datetime.datetime.isoformat(value)
    return text if value.microsecond else text + ".000000"


def _datetime_text(value: datetime.datetime) -> str:
    offset = value.utcoffset()
    if offset is None:
        return _naive_datetime_text(value)
    try:
        utc = (value - offset).replace(tzinfo=None)
    except OverflowError as exc:
        raise HashingError(f"datetime {value!r} is outside the range of UTC datetimes") from exc
    return _naive_datetime_text(utc) + "Z"


def _time_text(value: datetime.time) -> str:
    if value.tzinfo is not None:
        raise HashingError(f"cannot hash a time with a time zone ({value!r}): it names no instant")
    return datetime.time.isoformat(value, timespec="microseconds")


# Looked up by exact type(value) in the hot loop; subclasses are added on first sight.
_ENCODERS: dict[type, Callable[[Any], str]] = {
    bool: _bool_text,
    int: int.__repr__,
    float: _float_text,
    decimal.Decimal: _decimal_text,
    str: _str_text,
    bytes: bytes.hex,
    bytearray: bytearray.hex,
    memoryview: memoryview.hex,
    uuid.UUID: uuid.UUID.__str__,
    datetime.datetime: _datetime_text,
    datetime.date: datetime.date.isoformat,
    datetime.time: _time_text,
}


def _encoder_for(cls: type) -> Callable[[Any], str]:
    """The encoder of the nearest listed base class, memoised for `cls`."""
    for base in cls.__mro__[1:]:
        encode = _ENCODERS.get(base)
        if encode is not None:
            _ENCODERS[cls] = encode
            return encode
    raise HashingError(f"cannot hash a value of type {cls.__module__}.{cls.__qualname__}")


def canonical_text(value: object) -> str | None:
    """The canonical text of one value (see the module docstring), None for NULL."""
    if value is None:
        return None
    return (_ENCODERS.get(type(value)) or _encoder_for(type(value)))(value)


def _frame(value: object) -> str:
    # The lookup of canonical_text, inlined: this runs once per value of every extracted row.
    if value is None:
        return _NULL_FRAME
    text = (_ENCODERS.get(type(value)) or _encoder_for(type(value)))(value)
    return f"{len(text)}:{text}"


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise HashingError("cannot hash a str holding an unpaired surrogate") from exc


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def encode_row(values: Sequence[object]) -> bytes:
    """The canonical bytes of a row: framed canonical texts, concatenated, UTF-8."""
    return _utf8("".join([_frame(value) for value in values]))


def digest(values: Sequence[object]) -> str:
    """The sha256-128 hash of a row of values."""
    return _hash(encode_row(values))


class RowHasher:
    """(key hash, row hash) of source rows of one table, framing each value once for both."""

    __slots__ = ("_key_positions",)

    def __init__(self, key_positions: Sequence[int]) -> None:
        if not key_positions or any(type(p) is not int or p < 0 for p in key_positions):
            raise ValueError(f"key positions must be non-negative ints, got {key_positions!r}")
        self._key_positions = tuple(key_positions)

    def __call__(self, row: Sequence[object]) -> tuple[str, str]:
        frames = [_frame(value) for value in row]
        key = "".join([frames[position] for position in self._key_positions])
        return _hash(_utf8(key)), _hash(_utf8("".join(frames)))


@dataclass(slots=True)
class TableFingerprint:
    """Order-independent summary of a table's row hashes; equal tables have equal fingerprints.

    Mutable so a reader can `add` row by row; `merge` combines fingerprints of separate files.
    `fingerprint_sql` computes the same three numbers in BigQuery (``count`` as ``row_count``).
    """

    count: int = 0
    xor60: int = 0
    sum32: int = 0

    def add(self, row_hash: str) -> None:
        if not isinstance(row_hash, str) or not _ROW_HASH.fullmatch(row_hash):
            raise ValueError(f"not a {HASH_ALGORITHM} row hash: {row_hash!r}")
        self.count += 1
        self.xor60 ^= int(row_hash[:15], 16)
        self.sum32 += int(row_hash[15:23], 16)

    def merge(self, other: TableFingerprint) -> None:
        self.count += other.count
        self.xor60 ^= other.xor60
        self.sum32 += other.sum32

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "xor60": self.xor60, "sum32": self.sum32}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TableFingerprint:
        """The inverse of `to_dict`, refusing numbers no set of row hashes can produce."""
        values = {name: data[name] for name in ("count", "xor60", "sum32")}
        for name, value in values.items():
            if type(value) is not int or value < 0:
                raise ValueError(f"fingerprint {name} must be a non-negative int, got {value!r}")
        fingerprint = cls(**values)
        if fingerprint.xor60 >= 1 << _XOR_BITS or (
            fingerprint.sum32 > fingerprint.count * ((1 << _SUM_BITS) - 1)
        ):
            raise ValueError(f"fingerprint out of range: {values!r}")
        return fingerprint


def fingerprint_sql(column: str = quote_bigquery(ROW_HASH_COLUMN)) -> str:
    """BigQuery SELECT-list expressions computing `TableFingerprint.to_dict()` over `column`.

    `column` must already be a backtick-quoted identifier (see `shared.identifiers`), because it
    is placed into SQL text as is.
    """
    if not _QUOTED_COLUMN.fullmatch(column):
        raise ValueError(f"column must be a backtick-quoted identifier, got {column!r}")
    return (
        "COUNT(*) AS row_count, "
        f"COALESCE(BIT_XOR(SAFE_CAST(CONCAT('0x', SUBSTR({column}, 1, 15)) AS INT64)), 0) AS xor60, "
        f"COALESCE(SUM(SAFE_CAST(CONCAT('0x', SUBSTR({column}, 16, 8)) AS INT64)), 0) AS sum32"
    )
