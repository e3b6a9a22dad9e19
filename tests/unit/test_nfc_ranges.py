"""The code points the deep hash sends through NORMALIZE cover every character that can make a
string not NFC, by the same Unicode tables the extractor normalises with."""
from __future__ import annotations

import random
import re
import unicodedata

import sqlglot
from sqlglot.errors import ErrorLevel

from shared.nfc_ranges import NFC_UNSTABLE_RANGES, re2_class


def _unstable() -> set[int]:
    """UAX #15's quick check fails for these: combining class, NFC changes them alone, or they
    compose with the character before them."""
    points = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        if unicodedata.combining(char) or unicodedata.normalize("NFC", char) != char:
            points.add(code)
        parts = unicodedata.decomposition(char).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            points.add(int(parts[1], 16))
    return points


def _covered(code: int) -> bool:
    return any(a <= code <= b for a, b in NFC_UNSTABLE_RANGES)


def _python_class() -> re.Pattern[str]:
    return re.compile("[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in NFC_UNSTABLE_RANGES) + "]")


def test_every_unstable_code_point_is_covered() -> None:
    missed = sorted(code for code in _unstable() if not _covered(code))
    assert not missed, [f"U+{c:04X}" for c in missed[:20]]


def test_ranges_are_sorted_disjoint_and_short() -> None:
    assert all(a <= b for a, b in NFC_UNSTABLE_RANGES)
    assert all(b1 < a2 for (_, b1), (a2, _) in zip(NFC_UNSTABLE_RANGES, NFC_UNSTABLE_RANGES[1:], strict=False))
    assert len(NFC_UNSTABLE_RANGES) < 200


def test_strings_without_a_covered_character_are_nfc_already() -> None:
    # every character outside the ranges, in random company of its likely partners: composed
    # letters, Hangul syllables and leading jamo, starters of canonical pairs
    rng = random.Random(7)
    outside = [c for c in range(0x30000) if not 0xD800 <= c <= 0xDFFF and not _covered(c)]
    partners = [ord(c) for c in "aeAOouKé가각ᄀᄒ" + "\u0b47\u0bc6\u0dd9\u1025\u3046\u30a6"] + [0x1100, 0x1112]
    pool = [c for c in partners if not _covered(c)]
    for code in outside:
        text = chr(rng.choice(pool)) + chr(code) + chr(rng.choice(outside)) + chr(code)
        assert unicodedata.normalize("NFC", text) == text, [f"U+{ord(ch):04X}" for ch in text]


def test_strings_that_need_normalising_are_matched() -> None:
    pattern = _python_class()
    for text in ("e\u0301", "\u1100\u1161", "\uf900", "\u212a", "q\u0301\u0323", "A\u030a", "\u1f71", "\u0344"):
        assert unicodedata.normalize("NFC", text) != text
        assert pattern.search(text), text
    for text in ("", "MX-1 ", "Zoë 🌻", "山田 太郎", "김 민준", "Nguyễn", "Αθήνα", "Łukasz"):
        assert not pattern.search(text), text


def test_the_class_is_an_re2_pattern_inside_bigquery_sql() -> None:
    cls = re2_class()
    assert cls.startswith("[\\x{300}-\\x{387}") and cls.endswith("\\x{2F800}-\\x{2FA1D}]")
    sqlglot.parse_one(f"SELECT REGEXP_CONTAINS(s, r'{cls}') FROM t", read="bigquery", error_level=ErrorLevel.RAISE)
