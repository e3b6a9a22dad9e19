"""Driver values to Arrow a column at a time, checked like the row models, or not at all.

`ColumnConverter` turns one column of a chunk (raw DBAPI values plus SQLAlchemy's result processor
for the column) into the Arrow array the per-row path would build from
``arrow_value_converter(processor(value))``, and checks it against the same constraints
`shared.models.chunk_validator` applies (taken from the same `FieldSpec`s): NOT NULL, integer
range, decimal digits and scale, text length, plus what `shared.types` refuses (decimals BigQuery
cannot hold, cells over `MAX_CELL_BYTES`, dates outside 0001-01-01..9999-12-31).

It handles only combinations whose result it knows exactly: a column whose values are all of the
one Python type the model expects (exact type, not a subclass), or the text, int and float values
SQLite's processors parse. Anything else, and any value that fails a check, raises
`NotColumnar`; the snapshot then runs the per-row reference path for the whole chunk, which
quarantines the bad rows with their reasons. So a fast verdict is only ever "all rows fine".
"""
from __future__ import annotations

import datetime
import decimal
import operator
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import processors

from shared import exact_processors
from shared.models import FieldSpec
from shared.types import MAX_CELL_BYTES, arrow_type, arrow_value_converter

Processor = Callable[[Any], Any] | None
_NONE = type(None)
_INTEGER_DIGITS = {"NUMERIC": 29, "BIGNUMERIC": 38}
_EPOCH = datetime.date(1970, 1, 1)
_FIRST_DAY = (datetime.date(1, 1, 1) - _EPOCH).days      # BigQuery's DATE/DATETIME/TIMESTAMP range,
_LAST_DAY = (datetime.date(9999, 12, 31) - _EPOCH).days  # in days since 1970-01-01
_DAY_US = 86_400_000_000
# What SQLite's str_to_date/str_to_datetime (date/datetime.fromisoformat) accept and Arrow's cast
# parses to the same value; other spellings fromisoformat takes go the per-row way.
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}[ T]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?$"
# The one Python type a column's values may have for the columnar path, by model type.
_EXPECTED = {int: int, float: float, bool: bool, decimal.Decimal: decimal.Decimal, str: str, bytes: bytes,
             datetime.date: datetime.date, datetime.datetime: datetime.datetime, datetime.time: datetime.time,
             uuid.UUID: uuid.UUID}


class NotColumnar(Exception):
    """This chunk's column needs the per-row path (a value it cannot convert exactly, or a bad one)."""


@dataclass(frozen=True)
class _Processed:
    """A column after the driver's result processor: Python values, or an Arrow array of them."""

    values: Sequence[object] | None
    array: pa.Array | None
    python_type: type


class ColumnConverter:
    """One column: raw driver values in, the Arrow array of `shared.types.arrow_type` out."""

    def __init__(self, spec: FieldSpec, processor: Processor = None) -> None:
        self.spec = spec
        self.column = spec.column
        self.bq_type = spec.column.bq_type.upper()
        self.arrow_type = arrow_type(self.bq_type)
        self.processor = processor
        self.constraints = dict(spec.constraints)
        self._convert = arrow_value_converter(self.bq_type)

    def __call__(self, raw: Sequence[object]) -> pa.Array:
        kinds = set(map(type, raw))
        if _NONE in kinds:
            if not self.spec.nullable:
                raise NotColumnar(f"{self.column.name}: NULL in a NOT NULL column")
            kinds.discard(_NONE)
        try:
            array = self._to_arrow(self._process(raw, kinds))
        except NotColumnar:
            raise
        except (pa.ArrowException, ValueError, TypeError, OverflowError, ArithmeticError) as error:
            raise NotColumnar(f"{self.column.name}: {error}") from None
        self._check(array)
        return array

    def from_arrow(self, array: pa.Array) -> pa.Array:
        """The same conversion for a column a driver delivered as Arrow (`shared.extractor.arrow_stream`):
        `array` holds the values the DBAPI driver would return, as their Arrow type."""
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if isinstance(array.type, pa.BaseExtensionType):  # PostgreSQL numeric: its text as storage
            array = array.storage
        kind = _python_kind(array.type)
        if kind is None:
            raise NotColumnar(f"{self.column.name}: Arrow type {array.type}")
        if array.null_count and not self.spec.nullable:
            raise NotColumnar(f"{self.column.name}: NULL in a NOT NULL column")
        kinds = {kind} if array.null_count < len(array) else set()
        if kind is str:
            _check_utf8(array, self.column.name)
        try:
            converted = _arrow_to_target(*self._process_arrow(array, kind, kinds), self.arrow_type, self.bq_type)
        except NotColumnar:
            raise
        except (pa.ArrowException, ValueError, TypeError, OverflowError, ArithmeticError) as error:
            raise NotColumnar(f"{self.column.name}: {error}") from None
        self._check(converted)
        return converted

    def _process_arrow(self, array: pa.Array, kind: type, kinds: set[type]) -> tuple[pa.Array, type]:
        processor = self.processor
        if processor is None or not kinds or (processor is processors.to_float and kind is float):
            expected = _EXPECTED.get(self.spec.py_type.runtime)  # type: ignore[call-overload]
            if expected is None or not kinds <= {expected}:
                raise NotColumnar(f"{self.column.name}: {array.type} values")
            return array, expected
        if processor is exact_processors.zero_or_one and kind is int:
            return _flags(array, self.column.name), bool
        if processor is exact_processors.zero_or_one and kind is bool:
            return array, bool
        if processor is processors.str_to_date and kind is str:
            return _parse(array, _ISO_DATE, pa.date32()), datetime.date
        if processor is processors.str_to_datetime and kind is str:
            return _parse(array, _ISO_DATETIME, pa.timestamp("us")), datetime.datetime
        if processor is decimal.Decimal and kind is str and pa.types.is_decimal(self.arrow_type):
            return _decimal_from_text(array, self.arrow_type), decimal.Decimal
        if (rounded := exact_processors.rounding(processor)) is not None and kind in (int, float):
            return _decimal_from_numbers(rounded, _exact_floats(array)), decimal.Decimal
        raise NotColumnar(f"{self.column.name}: {array.type} through {processor!r}")

    # --- the driver's result processor, column-wise where it is one of SQLAlchemy's known ones ---

    def _process(self, raw: Sequence[object], kinds: set[type]) -> _Processed:
        processor = self.processor
        if processor is None or not kinds:
            return self._values(raw, kinds)
        if processor is processors.to_float and kinds <= {float}:
            return self._values(raw, kinds)
        if processor is exact_processors.zero_or_one and kinds <= {int}:
            return _Processed(None, _flags(pa.array(raw, pa.int64()), self.column.name), bool)
        if processor is exact_processors.zero_or_one and kinds <= {bool}:
            return self._values(raw, kinds)
        if processor is processors.str_to_date and kinds <= {str}:
            return _Processed(None, _parse(raw, _ISO_DATE, pa.date32()), datetime.date)
        if processor is processors.str_to_datetime and kinds <= {str}:
            return _Processed(None, _parse(raw, _ISO_DATETIME, pa.timestamp("us")), datetime.datetime)
        if processor is decimal.Decimal and kinds <= {str} and pa.types.is_decimal(self.arrow_type):
            return _Processed(None, _decimal_from_text(raw, self.arrow_type), decimal.Decimal)
        if (rounded := exact_processors.rounding(processor)) is not None and kinds <= {float, int}:
            return _Processed(None, _decimal_from_numbers(rounded, raw), decimal.Decimal)
        try:
            values = [None if value is None else processor(value) for value in raw]
        except Exception as error:  # a driver value its processor refuses: the per-row path says why
            raise NotColumnar(f"{self.column.name}: {error}") from None
        return self._values(values, set(map(type, values)) - {_NONE})

    def _values(self, values: Sequence[object], kinds: set[type]) -> _Processed:
        if self.spec.py_type.runtime is Any:
            return _Processed(values, None, object)
        expected = _EXPECTED.get(self.spec.py_type.runtime)  # type: ignore[call-overload]
        if expected is None or not kinds <= {expected}:
            raise NotColumnar(f"{self.column.name}: values of type(s) {sorted(k.__name__ for k in kinds)}")
        return _Processed(values, None, expected)

    # --- the BigQuery conversion (shared.types) ---------------------------------------------------

    def _to_arrow(self, processed: _Processed) -> pa.Array:
        target, kind = self.arrow_type, processed.python_type
        if processed.array is not None:
            return _cast(processed.array, target, kind)
        values = processed.values
        assert values is not None
        if kind is object:
            return pa.array([self._convert(value) for value in values], target)
        if kind is uuid.UUID and self.bq_type == "STRING":
            return pa.array([None if v is None else str(v) for v in values], target)
        if kind is datetime.datetime:
            _check_zones(values, naive_only=self.bq_type != "TIMESTAMP")
        if kind is datetime.time and set(map(_TZINFO, filter(None, values))) - {None}:
            raise NotColumnar(f"{self.column.name}: a time with a time zone")
        if (kind, self.bq_type) not in _DIRECT:
            raise NotColumnar(f"{self.column.name}: {kind.__name__} to {self.bq_type}")
        return pa.array(values, target)

    # --- the model's constraints and BigQuery's limits --------------------------------------------

    def _check(self, array: pa.Array) -> None:
        if not self.spec.nullable and array.null_count:
            raise NotColumnar(f"{self.column.name}: NULL in a NOT NULL column")
        if len(array) == array.null_count:
            return
        kind = array.type
        if pa.types.is_decimal(kind):
            self._check_decimal(array)
        elif pa.types.is_string(kind) or pa.types.is_binary(kind):
            longest = pc.max(pc.binary_length(array)).as_py()
            if longest > MAX_CELL_BYTES:
                raise NotColumnar(f"{self.column.name}: a value over {MAX_CELL_BYTES} bytes")
            limit = self.constraints.get("max_length")
            # pydantic counts characters of a str, bytes of bytes; no text has more characters than bytes
            if limit is not None and longest > limit and (
                    not pa.types.is_string(kind) or pc.max(pc.utf8_length(array)).as_py() > limit):
                raise NotColumnar(f"{self.column.name}: longer than {limit}")
        elif pa.types.is_date32(kind) or pa.types.is_timestamp(kind):
            if pa.types.is_date32(kind):
                units, first, last = array.cast(pa.int32()), _FIRST_DAY, _LAST_DAY
            else:
                units, first, last = array.cast(pa.int64()), _FIRST_DAY * _DAY_US, (_LAST_DAY + 1) * _DAY_US - 1
            low, high = pc.min_max(units).values()
            if low.as_py() < first or high.as_py() > last:
                raise NotColumnar(f"{self.column.name}: a date outside 0001-01-01..9999-12-31")
        elif pa.types.is_integer(kind):
            low, high = (scalar.as_py() for scalar in pc.min_max(array).values())
            if low < self.constraints.get("ge", low) or high > self.constraints.get("le", high):
                raise NotColumnar(f"{self.column.name}: out of range")

    def _check_decimal(self, array: pa.Array) -> None:
        scale = self.constraints.get("decimal_places", array.type.scale)
        whole = _INTEGER_DIGITS[self.bq_type]
        if "max_digits" in self.constraints:
            whole = min(whole, self.constraints["max_digits"] - scale)
        if whole < 0:  # scale above precision (PostgreSQL allows it): pydantic's digit count decides
            raise NotColumnar(f"{self.column.name}: a scale above the precision")
        magnitude = pc.max(pc.abs(array)).as_py()
        if magnitude >= decimal.Decimal(10) ** whole:
            raise NotColumnar(f"{self.column.name}: more than {whole} integer digits")
        if scale < array.type.scale:
            try:
                array.cast(pa.decimal256(76, scale))
            except pa.ArrowInvalid:
                raise NotColumnar(f"{self.column.name}: more than {scale} decimal places") from None


# (Python type, BigQuery type) pairs pa.array converts exactly as shared.types does.
_DIRECT = {
    (int, "INT64"), (float, "FLOAT64"), (bool, "BOOL"), (decimal.Decimal, "NUMERIC"),
    (decimal.Decimal, "BIGNUMERIC"), (str, "STRING"), (str, "GEOGRAPHY"), (bytes, "BYTES"),
    (datetime.date, "DATE"), (datetime.datetime, "DATETIME"), (datetime.datetime, "TIMESTAMP"),
    (datetime.time, "TIME"),
}


def _check_zones(values: Sequence[object], naive_only: bool) -> None:
    """DATETIME takes naive values only here; TIMESTAMP also fixed-offset ones (never a tzinfo
    whose utcoffset could be None, which shared.types reads as UTC wall clock)."""
    zones = set(map(_TZINFO, filter(None, values)))  # datetimes are never falsy; None is
    zones.discard(None)
    if zones and (naive_only or any(type(zone) is not datetime.timezone for zone in zones)):
        raise NotColumnar("a datetime with a time zone")


_TZINFO = operator.attrgetter("tzinfo")


def _parse(raw: Sequence[object] | pa.Array, pattern: str, target: pa.DataType) -> pa.Array:
    """ISO text parsed by Arrow, when every value has the one spelling both parsers agree on."""
    text = _as_arrow(raw, pa.string())
    if not pc.all(pc.match_substring_regex(text, pattern)).as_py():
        raise NotColumnar(f"text that is not ISO {target}")
    try:
        return text.cast(target)
    except pa.ArrowInvalid as error:
        raise NotColumnar(str(error)) from None


def _decimal_from_text(raw: Sequence[object] | pa.Array, target: pa.DataType) -> pa.Array:
    """Numeric text (PostgreSQL's) parsed exactly by Arrow; text with more fractional digits than
    the type holds, NaN or infinities are errors, left to the per-row path."""
    try:
        return _as_arrow(raw, pa.string()).cast(target)
    except pa.ArrowException as error:
        raise NotColumnar(str(error)) from None


def _flags(array: pa.Array, column: str) -> pa.Array:
    """0 and 1 as FALSE and TRUE; another number is for the per-row path to quarantine."""
    if pc.any(pc.and_(pc.not_equal(array, 0), pc.not_equal(array, 1))).as_py():
        raise NotColumnar(f"{column}: a number other than 0 and 1 for a BOOL")
    return pc.equal(array, 1)


def _decimal_from_numbers(processor: Callable[[Any], Any], raw: Sequence[object] | pa.Array) -> pa.Array:
    """SQLAlchemy's `to_decimal_processor_factory` is ``Decimal("%.<scale>f" % value)``: the value
    correctly rounded (half to even) to `scale` digits. value * 10**scale is rounded once in float64,
    so wherever it lies clearly off a tie the nearest integer is that rounding; the few others are
    formatted with the same operator, value by value."""
    scale = -processor(1).as_tuple().exponent
    if not 0 <= scale <= 15:
        raise NotColumnar(f"decimal scale {scale}")
    try:
        numbers = _as_arrow(raw, pa.float64())  # refuses ints a float64 cannot hold exactly
    except (pa.ArrowException, TypeError, OverflowError) as error:
        raise NotColumnar(str(error)) from None
    valid = numbers.is_valid().to_numpy(zero_copy_only=False)
    floats = numbers.to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.nan_to_num(floats, nan=0.0) * 10.0**scale
    if not np.isfinite(scaled).all() or np.isnan(floats[valid]).any():
        raise NotColumnar("a non-finite number for a decimal")
    unsure = valid & ((np.abs(scaled) >= 2.0**52)
                      | (np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) <= np.abs(scaled) * 2.0**-50))
    unscaled = np.rint(np.where(unsure, 0.0, scaled)).astype(np.int64)
    template = f"%.{scale}f"
    for index in np.flatnonzero(unsure).tolist():
        exact = decimal.Decimal(template % float(floats[index])).scaleb(scale)  # as exact as raw[index]
        if not -(2**63) <= exact < 2**63:
            raise NotColumnar("a decimal beyond 64 bits")
        unscaled[index] = int(exact)
    words = np.empty((len(unscaled), 2), np.int64)
    words[:, 0], words[:, 1] = unscaled, unscaled >> 63  # 128-bit two's complement, little-endian
    validity = numbers.buffers()[0]
    return pa.Array.from_buffers(pa.decimal128(38, scale), len(unscaled), [validity, pa.py_buffer(words)],
                                 null_count=numbers.null_count)


def _as_arrow(values: Sequence[object] | pa.Array, kind: pa.DataType) -> pa.Array:
    return values.cast(kind) if isinstance(values, pa.Array) else pa.array(values, kind)


# Arrow types a driver delivers, as the Python type of the values a DBAPI driver returns for them.
_ARROW_KINDS: tuple[tuple[Callable[[pa.DataType], bool], type], ...] = (
    (pa.types.is_boolean, bool), (pa.types.is_integer, int), (pa.types.is_float64, float),
    (pa.types.is_string, str), (pa.types.is_large_string, str), (pa.types.is_binary, bytes),
    (pa.types.is_large_binary, bytes), (pa.types.is_date32, datetime.date), (pa.types.is_timestamp, datetime.datetime),
)


def _python_kind(kind: pa.DataType) -> type | None:
    return next((python for matches, python in _ARROW_KINDS if matches(kind)), None)


def _check_utf8(array: pa.Array, name: str) -> None:
    """Arrow strings from a driver are not checked for UTF-8 (SQLite stores any bytes as TEXT)."""
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        raise NotColumnar(f"{name}: text that is not UTF-8") from None


def _exact_floats(array: pa.Array) -> pa.Array:
    """Numbers as float64, refusing integers float64 cannot hold exactly (as `pa.array` does)."""
    if pa.types.is_integer(array.type):
        low, high = pc.min_max(array).values()
        if low.is_valid and max(-low.as_py(), high.as_py()) > 2**53:
            raise NotColumnar("an integer beyond float64's exact range for a decimal")
    return array.cast(pa.float64())


def _arrow_to_target(array: pa.Array, kind: type, target: pa.DataType, bq_type: str) -> pa.Array:
    """What `_to_arrow` makes of the same values: the pairs it converts directly, as exact casts."""
    if kind is datetime.datetime and array.type.tz is not None and bq_type != "TIMESTAMP":
        raise NotColumnar(f"a datetime with a time zone for {bq_type}")
    if (kind, bq_type) not in _DIRECT:
        raise NotColumnar(f"{kind.__name__} to {bq_type}")
    return array if array.type == target else array.cast(target)


def _cast(array: pa.Array, target: pa.DataType, kind: type) -> pa.Array:
    if kind is decimal.Decimal and pa.types.is_decimal(array.type) and pa.types.is_decimal(target):
        return array.cast(target)  # to more fractional digits: exact, or an error
    if kind is bool and pa.types.is_boolean(target):
        return array
    if kind is datetime.date and pa.types.is_date32(target):
        return array
    if kind is datetime.datetime and pa.types.is_timestamp(target):
        return array.cast(target)  # naive to naive, or naive read as UTC like shared.types does
    raise NotColumnar(f"{kind.__name__} values to {target}")
