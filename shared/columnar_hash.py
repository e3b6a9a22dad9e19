"""The row and key hashes of `shared.hashing` computed a chunk at a time over Arrow arrays.

Same bytes as `RowHasher`, encoding version 1 (see the module docstring of shared.hashing): each
value's canonical text is built for a whole column with pyarrow.compute, framed as ``<n>:<text>``
(``~`` for NULL; the ``<n>:`` prefixes taken from a table), the frames of a row are joined in one
Arrow buffer by a single kernel call, and SHA-256 runs over each row's slice of that buffer
(`shared.batch_sha256`, a slice of rows a call). The input is what the snapshot stores, i.e. arrays
of `shared.types.arrow_type`; their Python values are what `RowHasher` hashes in the per-row path.

Where Arrow's own text is not the canonical one, the column (or just the values concerned) is
rendered per value in Python with the reference encoders: floats (``repr``), non-ASCII strings (NFC
by Python's own Unicode tables, so both paths agree on every Unicode version), and decimals so
small that Arrow writes them with an exponent.
"""
from __future__ import annotations

import binascii
import functools
import unicodedata
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared import batch_sha256
from shared.hashing import TableFingerprint, canonical_text

_NULL_FRAME = "~"
_DIGEST_BYTES = 16  # sha256-128
_SLICE_ROWS = 10_000


class ColumnarHashError(ValueError):
    """An array whose canonical texts cannot be built column-wise; hash the chunk row by row."""


def _float_texts(array: pa.Array) -> pa.Array:
    """Python's repr() without a trailing ".0", as `shared.hashing._float_text`. For magnitudes in
    [1e-4, 1e16), where repr() writes plain digits, Arrow's text is the same shortest round-trip
    digits whenever it writes no exponent itself; the other values (NaN, infinities and -0 among
    them) are rendered by Python."""
    text = array.cast(pa.string())
    magnitude = pc.abs(array)
    plain = pc.or_(pc.and_(pc.greater_equal(magnitude, 1e-4), pc.less(magnitude, 1e16)), pc.equal(magnitude, 0.0))
    exotic = pc.fill_null(pc.or_(pc.or_(pc.invert(plain), pc.match_substring(text, "e")), pc.equal(text, "-0")),
                          False)
    if not pc.any(exotic).as_py():
        return text
    rendered = [canonical_text(v) for v in array.filter(exotic).to_pylist()]
    return pc.replace_with_mask(text, exotic, pa.array(rendered, pa.string()))


@functools.cache
def _nfc_suspects() -> str:
    """An RE2 class of the code points that can make a string not NFC, by Python's own Unicode data:
    a non-zero combining class, a change under NFC, or composing with the character before (NFC
    quick check "Maybe": the second half of a canonical pair, Hangul vowels and trailing consonants).
    A string without any of them is NFC as it is (the quick check's "Yes"). Planes 2-16 count as
    suspect wholesale, which keeps the scan to the first two planes."""
    chars = [chr(code) for code in range(_SCANNED)]
    suspects = {code for code, combining in enumerate(map(unicodedata.combining, chars)) if combining}
    suspects |= {*range(0x1161, 0x1176), *range(0x11A8, 0x11C3)}  # Hangul V and T jamo compose algorithmically
    for char, decomposition in zip(chars, map(unicodedata.decomposition, chars), strict=True):
        if decomposition and decomposition[0] != "<":  # canonical: NFC changes it, or it is a composite
            if unicodedata.normalize("NFC", char) != char:
                suspects.add(ord(char))
            elif len(parts := decomposition.split()) == 2:
                suspects.add(int(parts[1], 16))  # composes with the character before it
    ranges: list[list[int]] = []
    for code in sorted(suspects):
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    spelled = "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" if a != b else f"\\x{{{a:x}}}" for a, b in ranges)
    return f"[{spelled}\\x{{{_SCANNED:x}}}-\\x{{10ffff}}]"


_SCANNED = 0x20000


def _string_texts(array: pa.Array) -> pa.Array:
    """NFC by Python's unicodedata, like `shared.hashing`, for the few values that may need it."""
    array = array.cast(pa.string())
    if array.null_count == len(array) or pc.all(pc.string_is_ascii(array)).as_py():  # ASCII is NFC
        return array
    suspect = pc.fill_null(pc.match_substring_regex(array, _nfc_suspects()), False)
    if not pc.any(suspect).as_py():
        return array
    texts = array.filter(suspect).to_pylist()
    normalized = [unicodedata.normalize("NFC", t) for t in texts]
    if normalized == texts:
        return array
    return pc.replace_with_mask(array, suspect, pa.array(normalized, pa.string()))


def _hex_texts(array: pa.Array) -> pa.Array:
    """Lowercase hex of every value at once: the hex of a buffer is the hexes of its slices."""
    array = pa.concat_arrays([array.cast(pa.large_binary())])  # offset 0, buffers of its own
    validity, offsets_buffer, data = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64, len(array) + 1)
    start, end = int(offsets[0]), int(offsets[-1])
    hexed = binascii.hexlify(memoryview(data)[start:end]) if data is not None else b""
    hex_offsets = pa.py_buffer((offsets - start) * 2)
    return pa.Array.from_buffers(pa.large_string(), len(array), [validity, hex_offsets, pa.py_buffer(hexed)],
                                 null_count=array.null_count).cast(pa.string())


def _decimal_texts(array: pa.Array) -> pa.Array:
    """Plain notation without trailing fractional zeros. Arrow writes values below 1e-6 with an
    exponent; those few are rendered by the reference encoder."""
    text = array.cast(pa.string())
    zero = pc.equal(array, pa.scalar(0, array.type))
    exponent = pc.and_(pc.fill_null(pc.match_substring(text, "E"), False), pc.invert(pc.fill_null(zero, True)))
    trimmed = pc.utf8_rtrim(pc.utf8_rtrim(text, "0"), ".") if array.type.scale > 0 else text
    trimmed = pc.if_else(zero, "0", trimmed)
    if not pc.any(exponent).as_py():
        return trimmed
    rendered = [canonical_text(v) for v in array.filter(exponent).to_pylist()]
    return pc.replace_with_mask(trimmed, exponent, pa.array(rendered, pa.string()))


def canonical_texts(array: pa.Array) -> pa.Array:
    """Each value's canonical text (`shared.hashing.canonical_text`), NULL for NULL."""
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_date32(kind):
        return array.cast(pa.string())
    if pa.types.is_floating(kind):
        return _float_texts(array)
    if pa.types.is_decimal(kind):
        return _decimal_texts(array)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _string_texts(array)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _hex_texts(array)
    if pa.types.is_timestamp(kind) and kind.unit == "us" and kind.tz in (None, "UTC"):
        # Arrow writes "YYYY-MM-DD HH:MM:SS.ffffff" (six digits for microseconds); the instant of
        # an aware value is already UTC, so its wall clock is the naive one plus "Z".
        text = pc.replace_substring(array.cast(pa.timestamp("us")).cast(pa.string()), " ", "T", max_replacements=1)
        return pc.binary_join_element_wise(text, "Z", "") if kind.tz else text
    if pa.types.is_time64(kind) and kind.unit == "us":
        return array.cast(pa.string())
    raise ColumnarHashError(f"no columnar canonical text for Arrow type {kind}")


def _fixed_width(kind: pa.DataType) -> int | None:
    """The length of every canonical text of a type whose texts all have one (four-digit years)."""
    if pa.types.is_date32(kind):
        return 10                                   # YYYY-MM-DD
    if pa.types.is_time64(kind) and kind.unit == "us":
        return 15                                   # HH:MM:SS.ffffff
    if pa.types.is_timestamp(kind) and kind.unit == "us":
        return 27 if kind.tz else 26                # YYYY-MM-DDTHH:MM:SS.ffffff[Z]
    return None


_PREFIXES = 4096  # "<n>:" for n below this comes from a table; the slot after it is the NULL frame
_PREFIX_TABLE = pa.array([f"{n}:" for n in range(_PREFIXES)] + [_NULL_FRAME], pa.string())


def framed(array: pa.Array) -> tuple[pa.Array | pa.Scalar, pa.Array]:
    """(prefix, text) of every value, whose concatenation is its frame: ``<code points>:`` and the
    canonical text, or ``~`` and NULL (joined as nothing) for NULL."""
    texts = canonical_texts(array)
    width = _fixed_width(array.type)
    if width is not None:
        if not texts.null_count:
            return pa.scalar(f"{width}:"), texts
        lengths = pc.if_else(texts.is_valid(), width, _PREFIXES)
    else:
        lengths = pc.utf8_length(texts)
        longest = pc.max(lengths).as_py()
        if longest is not None and longest >= _PREFIXES:
            spelled = pc.binary_join_element_wise(lengths.cast(pa.string()), ":", "")
            return (pc.fill_null(spelled, _NULL_FRAME) if texts.null_count else spelled), texts
        if texts.null_count:
            lengths = pc.fill_null(lengths, _PREFIXES)
    return _PREFIX_TABLE.take(lengths), texts


def frames(array: pa.Array) -> pa.Array:
    """``<code points>:<text>`` of every value, ``~`` for NULL."""
    return row_texts([framed(array)])


def row_texts(pieces: Sequence[tuple[pa.Array | pa.Scalar, pa.Array]]) -> pa.Array:
    """Each row's frames joined in column order (pieces from `framed`): the bytes `encode_row` gives."""
    arguments = [part for pair in pieces for part in pair]
    return pc.binary_join_element_wise(*arguments, "", null_handling="replace", null_replacement="")


def _hex_column(digests: np.ndarray) -> pa.Array:
    """32 lowercase hex characters a row, built in one buffer."""
    n = len(digests)
    hexed = binascii.hexlify(np.ascontiguousarray(digests).tobytes())
    offsets = np.arange(0, (n + 1) * 2 * _DIGEST_BYTES, 2 * _DIGEST_BYTES, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(hexed)])


def fingerprint_of(digests: np.ndarray) -> TableFingerprint:
    """`TableFingerprint` of the row hashes whose bytes these are (as if `add`ed one by one)."""
    if not len(digests):
        return TableFingerprint()
    head = digests[:, :8].copy().view(">u8").ravel()        # hex digits 1-16
    middle = digests[:, 4:12].copy().view(">u8").ravel()    # hex digits 9-24
    xor60 = int(np.bitwise_xor.reduce(head >> np.uint64(4)))
    sum32 = int(((middle >> np.uint64(4)) & np.uint64(0xFFFFFFFF)).sum(dtype=np.uint64))
    return TableFingerprint(count=len(digests), xor60=xor60, sum32=sum32)


def fingerprint_of_hex(hashes: pa.Array) -> TableFingerprint:
    """`fingerprint_of` row hashes given as their hex texts (as the key index stores them)."""
    if not len(hashes):
        return TableFingerprint()
    hashes = pa.concat_arrays([hashes.cast(pa.large_binary())])  # offset 0, buffers of its own
    offsets = np.frombuffer(hashes.buffers()[1], np.int64, len(hashes) + 1)
    if hashes.null_count or not np.all(np.diff(offsets) == 2 * _DIGEST_BYTES):
        raise ValueError("row hashes are not all 32 hex digits")
    data = memoryview(hashes.buffers()[2])[int(offsets[0]):int(offsets[-1])]
    return fingerprint_of(np.frombuffer(binascii.unhexlify(data), np.uint8).reshape(len(hashes), _DIGEST_BYTES))


def hash_columns(columns: Sequence[pa.Array],
                 key_positions: Sequence[int]) -> tuple[pa.Array, pa.Array, TableFingerprint]:
    """(key hashes, row hashes, fingerprint of the row hashes) of a chunk given as Arrow columns,
    `_SLICE_ROWS` rows at a time: the canonical texts and frames of a slice are several times its
    data, so slicing keeps that transient memory small whatever the chunk size."""
    rows = len(columns[0]) if columns else 0
    whole_row_is_key = list(key_positions) == list(range(len(columns)))
    row_slices, key_slices = [], []
    for start in range(0, rows, _SLICE_ROWS) or [0]:
        pieces = [framed(column.slice(start, _SLICE_ROWS)) for column in columns]
        texts = [row_texts(pieces)]
        if not whole_row_is_key:
            texts.append(row_texts([pieces[p] for p in key_positions]))
        row_digest, *key_digest = batch_sha256.digests(texts)
        row_slices.append(row_digest[:, :_DIGEST_BYTES])
        key_slices.extend(digest[:, :_DIGEST_BYTES] for digest in key_digest)
    row_digests = np.concatenate(row_slices)
    key_digests = np.concatenate(key_slices) if key_slices else row_digests
    return _hex_column(key_digests), _hex_column(row_digests), fingerprint_of(row_digests)
