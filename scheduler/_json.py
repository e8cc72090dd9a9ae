"""Strict JSON reading shared by envelopes and documents.

Operator documents arrive from the network: every way a JSON text can surprise a
parser (deep nesting, duplicate keys, NaN, huge numbers) is refused here, as a
DocumentError with one plain line, so no other exception leaves this package.
"""

import json

from loaxa.errors import DocumentError

MAX_DOCUMENT_BYTES = 256 * 1024


def check_size(size: int, what: str) -> None:
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"{what} is {size} bytes, over the 256 KiB ({MAX_DOCUMENT_BYTES} bytes) limit")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed in a document")


def _no_duplicate_keys(pairs):
    # Two readers of one signed text must see one meaning: a key given twice could be
    # read as the first copy elsewhere and as the last one here.
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"field {key!r} appears twice in one object")
        obj[key] = value
    return obj


def strict_loads(text: str, what: str):
    """json.loads with every surprise turned into a DocumentError naming `what`."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_refuse_constant)
    except RecursionError as exc:  # the C scanner raises this, not ValueError, for deep nesting
        raise DocumentError(f"{what} is not acceptable JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, our hooks, and the int digit limit
        raise DocumentError(f"{what} is not valid JSON: {_one_line(exc)}") from exc


def decode_utf8(raw: bytes, what: str) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{what} is not UTF-8 text (bad byte at offset {exc.start})") from exc


def encode_utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates, from "\\ud800" escapes in JSON
        raise DocumentError(f"{what} holds characters that are not valid Unicode "
                            f"(at offset {exc.start})") from exc


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


def describe(value) -> str:
    """A short, one-line picture of a JSON value for an error message (never recursive)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 30 else text[:27] + "..."
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
