"""What one turn says: a :class:`TurnParse` (the same shape the LLM answers in), read by
rules here, and turned into the turn's :class:`~recsys.dialogue.signals.Reading`.

The rules read, on the screened and redacted text of the turn:

* the way out — "just show me", "surprise me", "skip the questions", "show me now";
* an answer to the pending question — an option's number ("2"), an option named in the
  text, "older"/"newer" for an era question (the older or newer half of the options),
  or "any" / "don't mind" (the attribute is settled without a preference);
* everything :func:`recsys.serving.intent.parse_rules` finds (categories wanted and
  excluded, years, negatives), moods (a mood word that only repeats a wanted
  category's synonym — "funny" for Comedy — is not a second preference), a language
  ("in French"), a length ("something short"), liked and disliked titles ("like
  Heat", "not like Alien").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from recsys.dialogue.attributes import (
    LANGUAGE_NAMES,
    MOODS,
    era_label,
    era_range,
    length_range,
    mood_label,
)
from recsys.dialogue.signals import Reading, Signal
from recsys.items.model import category_key
from recsys.records import SignalKind
from recsys.serving.intent import SYNONYMS, parse_rules

__all__ = ["TurnParse", "normalise", "read_rules", "reading_of"]

_SHOW_NOW = re.compile(
    r"\b(?:just show(?: me)?|show me (?:now|something|anything|what you (?:have|got)|them|"
    r"results|the results)|surprise me|skip (?:the |these )?questions?|no more questions|"
    r"just recommend|recommend (?:now|something)|just pick|show results)\b"
)
_ANY = re.compile(
    r"^(?:any|anything|either|whatever|no preference|dont mind|i dont mind|dont care|"
    r"i dont care|doesnt matter|it doesnt matter|not fussed|all|both|no idea|any is fine|"
    r"anything is fine|none in particular|nothing in particular)\b"
)
_OLDER = re.compile(r"\b(?:old|older|classic|classics|earlier|vintage|retro)\b")
_NEWER = re.compile(r"\b(?:new|newer|recent|modern|latest|contemporary|newest)\b")
_SHORT = re.compile(r"\b(?:short|shorter|quick|under (?:90|ninety) min\w*)\b")
_LONG = re.compile(r"\b(?:long|longer|epic|over (?:two|2) hours)\b")
_LIKED = re.compile(
    r"\b(?:loved|liked|enjoyed|similar to|(?:something|anything|films?|movies?|stuff|ones?) "
    r"like)\s+((?:[a-z0-9]+\s?){1,6})"
)
_DISLIKED = re.compile(
    r"\b(?:hated|disliked|didnt like|did not like|not like|nothing like)\s+((?:[a-z0-9]+\s?){1,6})"
)
_TITLE_STOP = re.compile(r"\b(?:but|and|or|please|from|with|without|in|that|something)\b.*$")


class TurnParse(BaseModel):
    """One turn, read: the LLM's answer schema and the rules' result alike."""

    model_config = ConfigDict(extra="forbid")

    option: str | None = None
    any_option: bool = False
    show_now: bool = False
    categories: list[str] = Field(default_factory=list, max_length=10)
    not_categories: list[str] = Field(default_factory=list, max_length=10)
    year_min: int | None = Field(default=None, ge=1870, le=2100)
    year_max: int | None = Field(default=None, ge=1870, le=2100)
    moods: list[str] = Field(default_factory=list, max_length=3)
    language: str | None = None
    length: str | None = None
    negatives: list[str] = Field(default_factory=list, max_length=5)
    liked_titles: list[str] = Field(default_factory=list, max_length=5)
    disliked_titles: list[str] = Field(default_factory=list, max_length=5)

    @model_validator(mode="after")
    def _known_values(self, info: ValidationInfo) -> TurnParse:
        """With a context (an LLM answer), every enumerated value must be a known one."""
        context = info.context if isinstance(info.context, dict) else None
        if context is None:
            return self
        catalog = {c.casefold(): c for c in context.get("categories", ())}
        for name in ("categories", "not_categories"):
            values = getattr(self, name)
            unknown = [v for v in values if v.casefold() not in catalog]
            if unknown:
                raise ValueError(f"{name}: {unknown} are not catalog categories")
            setattr(self, name, [catalog[v.casefold()] for v in values])
        options = list(context.get("options", ()))
        if self.option is not None and self.option not in options:
            raise ValueError(f"option {self.option!r} is not one of the options {options}")
        if any(mood_label(m) is None for m in self.moods):
            raise ValueError(f"moods {self.moods} are not all known moods")
        if self.language is not None and self.language not in LANGUAGE_NAMES.values():
            raise ValueError(f"language {self.language!r} is not a known language")
        if self.length is not None and length_range(self.length) is None:
            raise ValueError(f"length {self.length!r} is not a known length")
        lo, hi = self.year_min, self.year_max
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("year_min is after year_max")
        for phrase in [*self.negatives, *self.liked_titles, *self.disliked_titles]:
            if len(phrase) > 100:
                raise ValueError("phrases are at most 100 characters")
        return self


def normalise(text: str) -> str:
    """Lower-case words and digits, apostrophes dropped, single spaces."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    return " ".join(re.findall(r"[a-z0-9]+", text))


def _title(fragment: str) -> str:
    return _TITLE_STOP.sub("", fragment).strip()


def _option_in(text: str, pending: str, options: Sequence[str]) -> str | None:
    """The option ``text`` names (by number, label or alias), if exactly one."""
    if re.fullmatch(r"\d", text) and 1 <= int(text) <= len(options):
        return options[int(text) - 1]
    hits = []
    for option in options:
        forms = {normalise(option)}
        if pending == "mood":
            forms |= {normalise(a) for a in MOODS.get(option, ())}
        if pending == "era" and option.endswith("0s") and option[:4].isdigit():
            forms.add(f"{option[2:4]}s")  # "90s"
        if any(f and re.search(rf"\b{re.escape(f)}\b", text) for f in forms):
            hits.append(option)
    return hits[0] if len(hits) == 1 else None


def read_rules(
    text: str,
    categories: Sequence[str],
    *,
    pending: str | None = None,
    options: Sequence[str] = (),
) -> TurnParse:
    """The rules' reading of a turn's (screened, redacted) ``text``."""
    norm = normalise(text)
    out = TurnParse(show_now=bool(_SHOW_NOW.search(norm)))
    if pending is not None and options:
        out.option = _option_in(norm, pending, options)
        if out.option is None and pending == "era":
            half = max(1, len(options) // 2)
            if _OLDER.search(norm) and not _NEWER.search(norm):
                out.option = "|".join(options[:half])
            elif _NEWER.search(norm) and not _OLDER.search(norm):
                out.option = "|".join(options[-half:])
        out.any_option = out.option is None and bool(_ANY.search(norm))
    intent = parse_rules(text, categories)
    out.categories = list(intent.categories_any)[:10]
    out.not_categories = list(intent.categories_none)[:10]
    out.year_min, out.year_max = intent.year_min, intent.year_max
    synonyms = {a for c in out.categories for a in SYNONYMS.get(normalise(c), ())}
    for mood, aliases in MOODS.items():
        words = [a for a in (mood, *aliases) if re.search(rf"\b{re.escape(a)}\b", norm)]
        if words and not all(w in synonyms for w in words):
            out.moods.append(mood)
    out.moods = out.moods[:3]
    for code, name in LANGUAGE_NAMES.items():
        lang = name.lower()
        stated = re.search(
            rf"\b(?:in|language)\s+{lang}\b|\b{lang}\s+(?:language|speaking|spoken)", norm
        )
        answered = pending == "language" and (re.search(rf"\b{lang}\b", norm) or norm == code)
        if stated or answered:
            out.language = name
    if _SHORT.search(norm):
        out.length = "under 90 min"
    elif _LONG.search(norm) and not re.search(r"\bas long as\b", norm):
        out.length = "over 2 hours"
    out.disliked_titles = [t for t in (_title(m) for m in _DISLIKED.findall(norm)) if t][:5]
    liked = [t for t in (_title(m) for m in _LIKED.findall(norm)) if t]
    out.liked_titles = [t for t in liked if t not in out.disliked_titles][:5]
    out.negatives = [
        n
        for n in intent.negatives
        if not any(category_key(n) == category_key(c) for c in out.not_categories)
        and n not in out.disliked_titles
        and not any(n.startswith("like ") and n[5:] in t for t in out.disliked_titles)
    ][:5]
    return out


def reading_of(
    parse: TurnParse, turn: int, *, pending: str | None = None, options: Sequence[str] = ()
) -> Reading:
    """The signals a parsed turn states (the pending question's answer first)."""
    signals: list[Signal] = []
    settled: list[str] = []

    def add(**fields: object) -> None:
        signal = Signal.model_validate({**fields, "turn": turn})
        if all(s.identity() != signal.identity() for s in signals):
            signals.append(signal)

    if pending is not None and parse.option:
        chosen = [o for o in parse.option.split("|") if o in options or pending == "era"]
        if chosen:
            _option_signals(pending, chosen, add)
    if pending is not None and parse.any_option and not parse.option:
        settled.append(pending)
    for category in parse.categories:
        add(kind=SignalKind.CATEGORY, value=category, hard=True)
    for category in parse.not_categories:
        add(kind=SignalKind.NOT_CATEGORY, value=category, hard=True)
    has_years = parse.year_min is not None or parse.year_max is not None
    if has_years and not any(s.kind is SignalKind.ERA for s in signals):
        add(
            kind=SignalKind.ERA,
            value=_era_text(parse.year_min, parse.year_max),
            low=parse.year_min,
            high=parse.year_max,
            hard=True,
        )
    for word in parse.moods:
        mood = mood_label(word)
        if mood is not None and not any(s.kind is SignalKind.MOOD for s in signals):
            add(kind=SignalKind.MOOD, value=mood, key="mood")
    if parse.language and not any(s.key == "language" for s in signals):
        _option_signals("language", [parse.language], add)
    if parse.length and not any(s.key == "runtime" for s in signals):
        _option_signals("length", [parse.length], add)
    for phrase in parse.negatives:
        add(kind=SignalKind.NEGATIVE, value=phrase[:100])
    for title in parse.liked_titles:
        add(kind=SignalKind.LIKED_ITEM, value=title[:100])
    for title in parse.disliked_titles:
        add(kind=SignalKind.DISLIKED_ITEM, value=title[:100])
    return Reading(signals=signals, settled=settled, show_now=parse.show_now)


def _era_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None and high - low == 9 and low % 10 == 0:
        return era_label(low)
    if low is not None and high is not None:
        return f"{low}-{high}"
    return f"after {low - 1}" if low is not None else f"before {(high or 0) + 1}"


def _option_signals(attribute: str, chosen: Sequence[str], add: object) -> None:
    """Signals for options of ``attribute`` the user picked."""
    emit = add  # a callable taking Signal fields
    assert callable(emit)
    if attribute == "genre":
        for option in chosen:
            emit(kind=SignalKind.CATEGORY, value=option, hard=True)
    elif attribute == "era":
        ranges = [r for r in (era_range(o) for o in chosen) if r is not None]
        if ranges:
            lows = [lo for lo, _ in ranges]
            highs = [hi for _, hi in ranges]
            low = None if None in lows else min(x for x in lows if x is not None)
            high = None if None in highs else max(x for x in highs if x is not None)
            value = chosen[0] if len(chosen) == 1 else f"{chosen[0]} to {chosen[-1]}"
            emit(kind=SignalKind.ERA, value=value, low=low, high=high, hard=True)
    elif attribute == "mood":
        mood = mood_label(chosen[0])
        if mood is not None:
            emit(kind=SignalKind.MOOD, value=mood, key="mood")
    elif attribute == "language":
        name = chosen[0]
        code = next((c for c, n in LANGUAGE_NAMES.items() if n == name), name)
        emit(kind=SignalKind.CONSTRAINT, value=f"in {name}", key="language", match=code, hard=True)
    elif attribute == "length":
        bounds = length_range(chosen[0])
        if bounds is not None:
            emit(
                kind=SignalKind.CONSTRAINT,
                value=chosen[0],
                key="runtime",
                low=bounds[0],
                high=bounds[1],
                hard=True,
            )
