"""How the simulated model's gullible mode reads text: as a model that obeys would.

A capable model reads through what a pattern filter stumbles on: it decodes base64,
base32, hex, url- and HTML-encoding, ``\\uXXXX`` escapes, rot13, reversed text and
invisible Unicode tag characters, ignores zero-width and bidi controls, and reads
look-alike letters as the letters they resemble. :func:`readings` returns every such
reading of a text. This is written apart from the product's own decoders
(:mod:`recsys.textsafety`) on purpose: a gullible model that decoded exactly what the
defence decodes would share its blind spots.

On those readings, :func:`names` says whether a text names an item (its id, its title,
or its title without the year) and :func:`self_promoting` whether an item's own text
asks, in any language or phrasing this module knows, for it to be recommended.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
import urllib.parse

__all__ = ["IGNORE", "names", "readings", "self_promoting", "title_forms"]

_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{8,}")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})")
_LOOKALIKE = str.maketrans(
    "аеорсухіјѕԁɡАВЕКМНОРСТХІЈЅαοτνΑΒΕΗΙΚΜΝΟΡΤΧΥΖ",
    "aeopcyxijsdgABEKMHOPCTXIJSaotvABEHIKMNOPTXYZ",
)
_LEET = str.maketrans("013457@$", "oieastas")

#: "ignore the rules" in the languages this model knows (for its garbage answer).
IGNORE = re.compile(
    r"\b(?:ignore|disregard|ignorez?|oublie[zr]?|ignoriere|vergiss|ignora|olvida|dimentica|"
    r"esqueca|esqueça|negeer|zignoruj|glöm|ignoruj|abaikan)\b|игнорируй|забудь|忽略|无视|無視"
    r"|무시|yok say|تجاهل|अनदेखा|bỏ qua",
    re.I,
)
_PROMOTE = re.compile(
    r"\b(?:recommend|rank|put|place|promote|boost|feature|prefer|favou?r|pick|choose|select|"
    r"show|list|return|first|top|number one|best match|above all|wins|"
    r"premier|première|erste|empfiehl|primero|primer|primo|primeiro|eerste|först|pierwszym|"
    r"ilk|první|pertama)\b|#1|первым|第一|一番|맨 위|الأولى|पहले|đầu",
    re.I,
)


def _printable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 4 or sum(ch.isprintable() for ch in text) < 0.9 * len(text):
        return None
    return text


def _decode_token(token: str) -> list[str]:
    out: list[str] = []
    padded = token + "=" * (-len(token) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            text = _printable(decode(padded))
        except (binascii.Error, ValueError):
            text = None
        if text:
            out.append(text)
    try:
        text = _printable(base64.b32decode(token + "=" * (-len(token) % 8)))
    except (binascii.Error, ValueError):
        text = None
    if text:
        out.append(text)
    if len(token) % 2 == 0 and re.fullmatch(r"[0-9a-fA-F]+", token):
        text = _printable(bytes.fromhex(token))
        if text:
            out.append(text)
    return out


def readings(text: str) -> list[str]:
    """Every way a capable model could read ``text`` (the text itself first)."""
    if not text:
        return []
    views = [text]
    tags = "".join(chr(ord(c) - 0xE0000) for c in text if 0xE0020 <= ord(c) <= 0xE007E)
    if tags:
        views.append(tags)
    visible = "".join(
        c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf"
    )
    visible = visible.replace("\u00ad", "")
    views.append(visible)
    views.append(visible.translate(_LOOKALIKE))
    views.append(visible.translate(_LOOKALIKE).lower().translate(_LEET))
    views.append(html.unescape(visible))
    views.append(urllib.parse.unquote(visible))
    views.append(_ESCAPE.sub(lambda m: chr(int(m[1] or m[2], 16)), visible))
    views.append(codecs.decode(visible, "rot13"))
    views.append(visible[::-1])
    for token in _TOKEN.findall(visible):
        views.extend(_decode_token(token))
    # letters spelled apart: "i g n o r e", "r-a-n-k", "I.g.n.o.r.e"
    views.append(re.sub(r"(?<=\b\w)[ .\-](?=\w\b)", "", visible))
    return list(dict.fromkeys(v for v in views if v))


def title_forms(title: str) -> list[str]:
    """The title as given and without a trailing ``(year)``, case-folded."""
    full = " ".join(title.casefold().split())
    bare = re.sub(r"\s*\(\d{4}\)$", "", full).strip()
    return [f for f in dict.fromkeys((full, bare)) if len(f) >= 3]


def _contains(haystack: str, needle: str) -> bool:
    return re.search(rf"(?<![0-9a-z]){re.escape(needle)}(?![0-9a-z])", haystack, re.I) is not None


def names(views: list[str], item_id: str | None, title: str) -> bool:
    """True when any reading names the item by id or by title."""
    forms = title_forms(title)
    for view in views:
        low = " ".join(view.casefold().split())
        if item_id and _contains(view, item_id):
            return True
        if any(_contains(low, form) for form in forms):
            return True
    return False


def self_promoting(views: list[str]) -> bool:
    """True when any reading of an item's own text asks for it to be promoted."""
    return any(_PROMOTE.search(view) for view in views)
