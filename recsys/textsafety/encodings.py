"""Encoded payloads in untrusted text: found, decoded for a rescan, masked in prompts.

A model decodes base64 as easily as it reads English, so an instruction in base64 is an
instruction. :func:`find_encoded` finds spans a model could decode into text —

* ``base64`` / ``base64url`` tokens (16+ characters), ``base32`` (16+), ``hex`` (16+
  digits), each only when it decodes to mostly printable UTF-8 text (a hash, an ISBN or
  a serial number decodes to bytes, not text, and stays);
* ``url`` (3+ ``%XX`` in a row), ``html`` (3+ character references), ``escape`` (3+
  ``\\uXXXX`` / ``\\xXX``), and invisible Unicode ``tags`` (U+E0020 to U+E007E spell ASCII) —

and :func:`whole_text_readings` the two whole-text ciphers a model also reads without a
marker: ``rot13`` and ``reversed`` text. The guard rescans every decoded text (twice
nested at most); :func:`mask_encoded` replaces each span by :data:`ENCODED` so no
encoded payload reaches a prompt at all, flagged or not.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import urllib.parse
from dataclasses import dataclass

__all__ = [
    "ENCODED",
    "Encoded",
    "decoded_texts",
    "find_encoded",
    "mask_encoded",
    "whole_text_readings",
]

#: What :func:`mask_encoded` leaves where an encoded payload was.
ENCODED = "[encoded]"

_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_B32 = re.compile(r"(?<![A-Za-z0-9=])[A-Z2-7]{16,}={0,6}(?![A-Za-z0-9=])")
_HEX = re.compile(r"(?<![0-9A-Za-z])(?:0x)?(?:[0-9a-fA-F]{2}){8,}(?![0-9A-Za-z])")
_URL = re.compile(r"(?:%[0-9A-Fa-f]{2}[^\s%]{0,3}){3,}")
_REF = r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z]{2,8});"
_HTML = re.compile(rf"{_REF}(?:\s?{_REF}){{2,}}")
_ESCAPE = re.compile(r"(?:\\u[0-9a-fA-F]{4}|\\x[0-9a-fA-F]{2}|\\U[0-9a-fA-F]{8}){3,}")
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_ESCAPE_ONE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})|\\U([0-9a-fA-F]{8})")
_HINT = re.compile(r"[%&\\]|[A-Za-z0-9+/_=-]{16,}")


@dataclass(frozen=True)
class Encoded:
    """One encoded span of a text and what it decodes to."""

    kind: str
    start: int
    end: int
    decoded: str


def _as_text(raw: bytes) -> str | None:
    """``raw`` as text if it is printable UTF-8 with letters (or another encoding's
    alphabet: a payload may be nested), else None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 4:
        return None
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in text)
    letters = sum(ch.isalpha() for ch in text)
    alnum = sum(ch.isalnum() for ch in text)
    if printable < 0.95 * len(text):
        return None
    if letters < 0.4 * len(text) and alnum < 0.8 * len(text):  # text, or another encoding
        return None
    return text


def _b64(token: str) -> tuple[str, str] | None:
    body = token.rstrip("=")
    if len(body) % 4 == 1:
        return None
    padded = body + "=" * (-len(body) % 4)
    urlsafe = "-" in body or "_" in body
    if urlsafe and ("+" in body or "/" in body):
        return None
    try:
        raw = (base64.urlsafe_b64decode if urlsafe else base64.b64decode)(padded)
    except (binascii.Error, ValueError):
        return None
    text = _as_text(raw)
    return (("base64url" if urlsafe else "base64"), text) if text else None


def _b32(token: str) -> str | None:
    body = token.rstrip("=")
    try:
        return _as_text(base64.b32decode(body + "=" * (-len(body) % 8)))
    except (binascii.Error, ValueError):
        return None


def _hex(token: str) -> str | None:
    digits = token[2:] if token[:2].lower() == "0x" else token
    return _as_text(bytes.fromhex(digits)) if len(digits) % 2 == 0 else None


def find_encoded(text: str) -> list[Encoded]:
    """Encoded spans of ``text`` that decode to text, in order, not overlapping."""
    if not text:
        return []
    found: list[Encoded] = []
    if not text.isascii():
        for m in _TAGS.finditer(text):
            decoded = "".join(chr(ord(c) - 0xE0000) for c in m.group(0) if ord(c) >= 0xE0020)
            found.append(Encoded("tags", m.start(), m.end(), decoded))
    if _HINT.search(text):
        for m in _HEX.finditer(text):
            if (hex_text := _hex(m.group(0))) is not None:
                found.append(Encoded("hex", m.start(), m.end(), hex_text))
        for m in _B32.finditer(text):
            if (b32_text := _b32(m.group(0))) is not None:
                found.append(Encoded("base32", m.start(), m.end(), b32_text))
        for m in _B64.finditer(text):
            if (hit := _b64(m.group(0))) is not None:
                found.append(Encoded(hit[0], m.start(), m.end(), hit[1]))
        if "%" in text:
            for m in _URL.finditer(text):
                decoded = urllib.parse.unquote(m.group(0), errors="replace")
                if "\ufffd" not in decoded:
                    found.append(Encoded("url", m.start(), m.end(), decoded))
        if "&" in text:
            for m in _HTML.finditer(text):
                found.append(Encoded("html", m.start(), m.end(), html.unescape(m.group(0))))
        if "\\" in text:
            for m in _ESCAPE.finditer(text):
                decoded = _ESCAPE_ONE.sub(lambda e: chr(int(e[1] or e[2] or e[3], 16)), m.group(0))
                found.append(Encoded("escape", m.start(), m.end(), decoded))
    found.sort(key=lambda e: (e.start, -(e.end - e.start)))
    kept: list[Encoded] = []
    for enc in found:  # the first (longest) of overlapping spans wins
        if not kept or enc.start >= kept[-1].end:
            kept.append(enc)
    return kept


def decoded_texts(text: str, depth: int = 2) -> list[tuple[str, str]]:
    """``(kind, decoded text)`` of every payload, payloads inside payloads included."""
    out: list[tuple[str, str]] = []
    todo = [("", text)]
    for _ in range(depth):
        nxt: list[tuple[str, str]] = []
        for prefix, current in todo:
            for enc in find_encoded(current):
                kind = f"{prefix}{enc.kind}"
                out.append((kind, enc.decoded))
                nxt.append((f"{kind}>", enc.decoded))
        todo = nxt
    return out


def whole_text_readings(text: str) -> list[tuple[str, str]]:
    """``(kind, text)`` for the whole-text ciphers: rot13 and reversed."""
    return [("rot13", codecs.decode(text, "rot13")), ("reversed", text[::-1])]


def mask_encoded(text: str) -> str:
    """``text`` with every encoded span replaced by :data:`ENCODED`."""
    spans = find_encoded(text)
    if not spans:
        return text
    out: list[str] = []
    at = 0
    for enc in spans:
        out.append(text[at : enc.start])
        out.append(ENCODED)
        at = enc.end
    out.append(text[at:])
    return "".join(out)
