"""SQLAlchemy's result processor for decimals, with whole numbers taken exactly.

SQLAlchemy turns a number the driver returns for a NUMERIC column into a Decimal by formatting it
as a float rounded to the column's scale (``Decimal("%.2f" % value)``). That is what SQL Server or
PostgreSQL would have stored for a float in a NUMERIC(p, 2), but a whole number SQLite keeps
exactly (NUMERIC affinity stores 9007199254740993 as an integer) came out as 9007199254740992.00.
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


def exact(processor: Any) -> Any:
    """`processor`, with whole numbers exact if it is SQLAlchemy's decimal processor."""
    return ExactWholeNumbers(processor) if isinstance(processor, processors.to_decimal_processor_factory) else processor


def rounding(processor: Any) -> processors.to_decimal_processor_factory | None:
    """The SQLAlchemy decimal processor `processor` is or wraps, else None."""
    if isinstance(processor, ExactWholeNumbers):
        return processor.rounded
    return processor if isinstance(processor, processors.to_decimal_processor_factory) else None
