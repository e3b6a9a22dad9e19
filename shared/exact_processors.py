"""SQLAlchemy's result processors, where one would turn a stored value into another.

For a NUMERIC column SQLAlchemy formats the number the driver returns as a float rounded to the
column's scale (``Decimal("%.2f" % value)``), so a whole number SQLite keeps exactly (NUMERIC
affinity stores 9007199254740993 as an integer) came out as 9007199254740992.00. For a BOOLEAN
column it takes any truthy value for TRUE, so SQLite's 2, 'false' or X'00' landed as TRUE.
"""
from __future__ import annotations

import decimal
from typing import Any

from sqlalchemy.engine import processors


class ExactWholeNumbers:
    """Integers as their own Decimal; anything else as SQLAlchemy's processor `rounded` makes it."""

    __slots__ = ("rounded",)

    def __init__(self, rounded: processors.to_decimal_processor_factory) -> None:
        self.rounded = rounded

    def __call__(self, value: Any) -> Any:
        return decimal.Decimal(value) if type(value) is int else self.rounded(value)


def zero_or_one(value: Any) -> Any:
    """0 and 1 as FALSE and TRUE; any other value as it is, for the BOOL converter to refuse."""
    return value == 1 if type(value) is int and value in (0, 1) else value


def exact(processor: Any) -> Any:
    """`processor`, or the one that keeps what it would change."""
    if isinstance(processor, processors.to_decimal_processor_factory):
        return ExactWholeNumbers(processor)
    return zero_or_one if processor is processors.int_to_boolean else processor


def rounding(processor: Any) -> processors.to_decimal_processor_factory | None:
    """The SQLAlchemy decimal processor `processor` is or wraps, else None."""
    if isinstance(processor, ExactWholeNumbers):
        return processor.rounded
    return processor if isinstance(processor, processors.to_decimal_processor_factory) else None
