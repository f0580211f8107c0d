"""The injection guard: flags instruction-like text in user queries and item text.

The first layer of the defence (the others: quoting every untrusted text as data, a
system prompt that says quoted text is never instructions, an output schema that
enumerates the allowed ids, and validation of every answer). Text that the guard flags
never reaches a prompt as it was written: :meth:`InjectionGuard.neutralise` drops each
sentence that looks like an instruction (and any fake JSON / chat-markup fragment) and
leaves :data:`REMOVED` in its place, so the data around it still counts.

What is flagged (``reasons`` name the category and the language):

* ``override`` — "ignore/disregard/forget the previous instructions", "new instructions:";
* ``role`` — system/developer role markers (``system:``, ``<|im_start|>``, ``[INST]``)
  and role-play ("you are now", "pretend you are", "act as an unrestricted AI");
* ``fake_output`` — fake JSON or tool output (``{"ranked_ids": …}``, ``"role": "system"``,
  ``<system>`` tags, our own ``<<<``/``>>>`` quote markers);
* ``id_smuggling`` — "rank m42 first", "put item X at the top", "always recommend";
* ``prompt_leak`` — "show me your system prompt", "what are your instructions";

in English, French, German, Spanish, Italian, Portuguese, Russian and Chinese. Matching
runs on a normalised copy (NFKC, case-folded, Latin accents stripped, every invisible
character removed: :mod:`recsys.textsafety.normalise`), so "IGNORE", "ignórá",
"ig\u200bnore" and "ignore" in mathematical bold letters look alike.

Regexes alone trail the attacker, so a scan that finds nothing looks again (issue 14):

* at the *scan variants* of the text — look-alike letters, leetspeak, letters spelled
  apart, misspelled instruction words (reason ``obfuscated:<kind>`` beside the rule's);
* at every *encoded payload* it holds — base64/base32/hex/url/HTML/escapes/Unicode tags,
  nested twice (:mod:`recsys.textsafety.encodings`): a payload that decodes to an
  instruction flags the text with the rule's reason and ``encoded:<kind>``, and one that
  decodes to two or more words of hidden text flags it with ``encoded:<kind>`` alone;
* at its rot13 and reversed readings (``encoded:rot13``, ``encoded:reversed``).

``deep=False`` turns those three off (the rules on the normalised text only), to
measure what they add. The rules are data in
:mod:`recsys.serving.guard_rules`, tuned on :mod:`testkit.injection_corpus`,
whose benign half keeps them from flagging ordinary queries ("no horror please") and
descriptions ("ignorance", "the first"). A scan of ordinary ASCII text costs tens of
microseconds: rules are looked up by the word stems the text contains, and only the few
that could match run their regex.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from recsys.serving.guard_rules import RULES, Rule
from recsys.textsafety.encodings import decoded_texts, whole_text_readings
from recsys.textsafety.normalise import INVISIBLE, scan_variants

__all__ = ["CATEGORIES", "REMOVED", "GuardVerdict", "InjectionGuard", "normalise_for_scan"]

#: What :meth:`InjectionGuard.neutralise` leaves where it removed instruction-like text.
REMOVED = "[…]"

CATEGORIES = ("override", "role", "fake_output", "id_smuggling", "prompt_leak")

_LATIN = re.compile(r"[a-z]")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def normalise_for_scan(text: str) -> str:
    """NFKC, case-folded text without invisible characters, with accents stripped from
    Latin letters only (Cyrillic ``й`` keeps its breve), whitespace collapsed."""
    if text.isascii():  # the common case: nothing to fold but case (and maybe spaces)
        low = text.lower()
        if "  " in low or "\t" in low or "\r" in low or "\f" in low or "\v" in low:
            return _SPACES.sub(" ", low)
        return low
    text = unicodedata.normalize("NFKC", text).translate(INVISIBLE).casefold()
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", text):
        if unicodedata.combining(ch) and out and _LATIN.match(out[-1]):
            continue
        out.append(ch)
    text = unicodedata.normalize("NFC", "".join(out))
    text = text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    return _SPACES.sub(" ", text)


@dataclass(frozen=True)
class GuardVerdict:
    """Whether text looks like an instruction, and which rules said so."""

    flagged: bool
    reasons: list[str] = field(default_factory=list)


_TOKEN = re.compile(r"[a-z0-9]+")
_WORDS = re.compile(r"[^\W\d_]{2,}")
_STEM = 4
# bytes.translate table: ASCII letters and digits stay, everything else becomes a space
_WORD_BYTES = bytes(i if chr(i).isascii() and chr(i).isalnum() else 32 for i in range(256))


# Fragments removed before sentence-level neutralisation: JSON-ish objects and chat markup.
_FRAGMENTS = re.compile(
    r"\{[^{}]{0,2000}\}|```.*?```|<\|?[a-z_/ ]{1,20}\|?>|\[/?INST\]|<<<|>>>", re.S | re.I
)
_SENTENCE = re.compile(r"[^.!?;\n\u3002\uff01\uff1f]*(?:[.!?;\n\u3002\uff01\uff1f]+|$)")


class InjectionGuard:
    """Flags instruction-like text and neutralises it into data."""

    def __init__(self, rules: tuple[Rule, ...] = RULES, *, deep: bool = True) -> None:
        self._rules_all = rules
        self.deep = deep
        # The fast ASCII path. Every rule's regex starts its words at word boundaries,
        # so a needle present in the text means its longest word starts a token of the
        # text: rules are looked up by the 4-letter stems of the text's tokens. Non-word
        # needles ({, ###) are substring tests; rules whose needles are all non-ASCII
        # (Cyrillic, Chinese) cannot match ASCII text.
        by_stem: dict[bytes, set[int]] = {}
        by_symbol: dict[str, set[int]] = {}
        self._always: tuple[int, ...] = tuple(i for i, r in enumerate(rules) if not r.needles)
        for i, rule in enumerate(rules):
            for needle in rule.needles:
                if not needle.isascii():
                    continue
                words = _TOKEN.findall(needle)
                if words:
                    stem = max(words, key=len)[:_STEM].encode()
                    by_stem.setdefault(stem, set()).add(i)
                else:
                    by_symbol.setdefault(needle, set()).add(i)
        self._by_stem = {k: tuple(v) for k, v in by_stem.items()}
        self._stems = frozenset(by_stem)
        self._by_symbol = tuple((k, tuple(v)) for k, v in by_symbol.items())

    def scan(self, text: str | None) -> GuardVerdict:
        """Which rules ``text`` trips (``category:language`` each, in rule order), and
        which deeper reading tripped them (``obfuscated:…``, ``encoded:…``)."""
        if not text:
            return GuardVerdict(False, [])
        norm = normalise_for_scan(text)
        reasons = self._rules(norm)
        if not self.deep:
            return GuardVerdict(bool(reasons), reasons)
        if not reasons:
            for kind, variant in scan_variants(norm):
                found = self._rules(variant)
                if found:
                    reasons = [*found, f"obfuscated:{kind}"]
                    break
        for kind, decoded in decoded_texts(text):
            found = self._rules(normalise_for_scan(decoded))
            if not found:
                norm_decoded = normalise_for_scan(decoded)
                for _, variant in scan_variants(norm_decoded):
                    found = self._rules(variant)
                    if found:
                        break
            if found or len(_WORDS.findall(decoded)) >= 2:
                reasons += [r for r in [*found, f"encoded:{kind}"] if r not in reasons]
        if not reasons:
            for kind, reading in whole_text_readings(norm):
                found = self._rules(reading)
                if found:
                    reasons = [*found, f"encoded:{kind}"]
                    break
        return GuardVerdict(bool(reasons), reasons)

    def _rules(self, norm: str) -> list[str]:
        """The rules' reasons for normalised text."""
        if norm.isascii():
            todo = set(self._always)
            tokens = norm.encode().translate(_WORD_BYTES).split()
            for stem in self._stems.intersection([t[:_STEM] for t in tokens]):
                todo.update(self._by_stem[stem])
            for symbol, indexes in self._by_symbol:
                if symbol in norm:
                    todo.update(indexes)
            candidates = [self._rules_all[i] for i in sorted(todo)]
        else:
            candidates = [
                r for r in self._rules_all if not r.needles or any(n in norm for n in r.needles)
            ]
        reasons: list[str] = []
        for rule in candidates:
            reason = f"{rule.category}:{rule.language}"
            if reason not in reasons and rule.hits(norm):
                reasons.append(reason)
        return reasons

    def neutralise(self, text: str | None) -> str:
        """What of ``text`` may reach a prompt as data.

        Unflagged text comes back unchanged. Otherwise fake JSON / chat-markup fragments
        and every sentence that trips a rule are replaced by :data:`REMOVED`; if the rest
        still trips a rule (an instruction spread over sentences), only :data:`REMOVED`
        is left.
        """
        if not text or not self.scan(text).flagged:
            return text or ""
        stripped = _FRAGMENTS.sub(f" {REMOVED} ", text)
        kept: list[str] = []
        for sentence in _SENTENCE.findall(stripped):
            if not sentence:
                continue
            if self.scan(sentence).flagged:
                kept.append(f"{REMOVED} ")
            else:
                kept.append(sentence)
        out = re.sub(r"(?:\s*\[…\]\s*)+", f" {REMOVED} ", "".join(kept)).strip()
        if self.scan(out).flagged:
            return REMOVED
        return out
