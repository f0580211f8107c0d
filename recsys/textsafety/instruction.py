"""Instruction-likeness of untrusted text, scored with the sentence embedder we ship.

Pattern rules know the phrasings someone wrote down; an embedding knows what a sentence
*means*, in any phrasing (and, less well, in other languages). :class:`InstructionScorer`
splits a text into sentences, embeds each (all-MiniLM-L6-v2 through the
:class:`~recsys.embedding.Embedder` port) and scores it by how much closer it sits to
instruction exemplars than to ordinary catalog and query text
(:mod:`recsys.textsafety.exemplars`): the mean cosine similarity of its ``k`` nearest
instruction exemplars minus that of its ``k`` nearest ordinary ones. A text's score is
its highest sentence score; it counts as an instruction from :attr:`threshold` on.

The threshold is not hand-tuned: :func:`choose_threshold` picks it on the injection
corpus's ``dev`` split (:data:`DEFAULT_THRESHOLD` records the value and the rule), and
the ``heldout`` split only measures it (``benchmarks/injection.py``).

Scores are memoised per text and sentence (LRU), so catalog text is embedded once per
process, not once per request: a request pays only for sentences never seen before. With
a :class:`~recsys.textsafety.margins.MarginStore`, catalog sentences' margins are also
shared through Postgres (per :attr:`InstructionScorer.version`): preloaded at start,
looked up before embedding, written back after — the enrich worker fills them when it
writes items, so the serve path does not embed catalog text.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.embedding import Embedder
from recsys.textsafety.exemplars import BENIGN_EXEMPLARS, INSTRUCTION_EXEMPLARS

if TYPE_CHECKING:
    from recsys.textsafety.margins import MarginStore

__all__ = [
    "DEFAULT_THRESHOLD",
    "AsyncEmbed",
    "InstructionScorer",
    "Threshold",
    "calibrate",
    "choose_threshold",
    "sentences",
]

#: Chosen by :func:`calibrate` on the injection corpus's dev split (all-MiniLM-L6-v2,
#: k=3; ``python -m benchmarks injection --calibrate`` reproduces it).
DEFAULT_THRESHOLD = 0.0296
#: The calibration rule: flag at most this share of the hard benign look-alikes …
MAX_FPR_LOOKALIKES = 0.10
#: … and at most this share of ordinary catalog text and queries.
MAX_FPR_ORDINARY = 0.01

#: ``texts -> unit vectors``, awaited (serving runs the model off the event loop).
AsyncEmbed = Callable[[list[str]], Awaitable[np.ndarray]]

_SENTENCE = re.compile(r"[^.!?;\n\u3002\uff01\uff1f\u0964]+[.!?;\n\u3002\uff01\uff1f\u0964]*")
_MAX_SENTENCE = 300


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` that are worth scoring (a letter or digit in each)."""
    out = []
    for part in _SENTENCE.findall(text or ""):
        part = " ".join(part.split())[:_MAX_SENTENCE]
        if any(ch.isalnum() for ch in part):
            out.append(part)
    return list(dict.fromkeys(out))


class InstructionScorer:
    """Scores texts for instruction-likeness; memoised, batched, off the event loop."""

    def __init__(
        self,
        embed: AsyncEmbed,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        k: int = 3,
        cache_size: int = 200_000,
        chunk: int = 16,
        instructions: Sequence[str] = INSTRUCTION_EXEMPLARS,
        benign: Sequence[str] = BENIGN_EXEMPLARS,
        model: str = "",
        store: MarginStore | None = None,
    ) -> None:
        self._embed = embed
        self.threshold = threshold
        self.k = k
        self.cache_size = cache_size
        self.chunk = chunk
        self._exemplar_texts = (list(instructions), list(benign))
        #: what the margins depend on (the model, k, the exemplars) — not the threshold,
        #: which is applied when reading — hashed: stored margins of another version of
        #: the scorer are never read
        self.version = _version(model, k, instructions, benign)
        self.store = store
        #: sentences embedded here, and margins read from the store (observability, tests)
        self.embedded = 0
        self.from_store = 0
        self._preloaded = False
        self._exemplars: tuple[np.ndarray, np.ndarray] | None = None
        self._sentences: OrderedDict[str, float] = OrderedDict()
        self._texts: OrderedDict[str, float] = OrderedDict()
        self._lock = asyncio.Lock()

    @classmethod
    def from_embedder(cls, embedder: Embedder, **options: Any) -> InstructionScorer:
        """A scorer that runs ``embedder`` in a worker thread (its version names the
        embedder's model)."""

        async def embed(texts: list[str]) -> np.ndarray:
            return await asyncio.to_thread(embedder.embed, texts)

        return cls(embed, **({"model": embedder.name} | options))

    async def warm(self) -> None:
        """Embed the exemplars now (once), not inside the first request's deadline."""
        if self._exemplars is None:
            async with self._lock:  # one warm-up, however many requests wait for it
                if self._exemplars is None:
                    instructions, benign = self._exemplar_texts
                    vectors = await self._embed([*instructions, *benign])
                    self._exemplars = (vectors[: len(instructions)], vectors[len(instructions) :])

    async def preload(self) -> int:
        """Load the stored catalog margins into the memo (once; at a process's start).

        Returns:
            How many margins were loaded.
        """
        await self.warm()
        if self.store is None or self._preloaded:
            return 0
        self._preloaded = True
        stored = await self.store.load(self.version, self.cache_size)
        for sentence, margin in stored.items():
            _put(self._sentences, sentence, margin, self.cache_size)
        return len(stored)

    def flagged(self, score: float) -> bool:
        """True when ``score`` marks an instruction."""
        return score >= self.threshold

    def cached(self, text: str) -> float | None:
        """The memoised score of ``text`` (None if it was never scored)."""
        return self._texts.get(text)

    async def score(self, text: str) -> float:
        """The score of one text."""
        return (await self.scores([text]))[0]

    async def scores(self, texts: Sequence[str], *, catalog: bool = False) -> list[float]:
        """The score of each text (-1 for text without a sentence); the sentences never
        seen before are embedded in chunks of :attr:`chunk` (so a query waiting for the
        same model thread waits for one chunk at most, not for a whole catalog batch).

        ``catalog``: the texts are catalog text (item titles and descriptions): their
        sentences are looked up in the store before being embedded, and what had to be
        embedded is stored. Anything else (queries) never touches the store.
        """
        await self.warm()
        missing = [t for t in dict.fromkeys(texts) if t not in self._texts]
        if missing:
            await self._fill(missing, catalog)
        out = []
        for text in texts:
            score = self._texts.get(text)
            if score is None:  # evicted meanwhile by a huge batch: recompute
                await self._fill([text], catalog)
                score = self._texts.get(text, -1.0)
            out.append(score)
        return out

    async def _fill(self, texts: list[str], catalog: bool = False) -> None:
        split = {t: sentences(t) for t in texts}
        new = list(
            dict.fromkeys(s for ss in split.values() for s in ss if s not in self._sentences)
        )
        store = self.store if catalog else None
        if store is not None and new:
            stored = await store.get(self.version, new)
            for sentence, margin in stored.items():
                _put(self._sentences, sentence, margin, self.cache_size)
            self.from_store += len(stored)
            new = [s for s in new if s not in stored]
        embedded: dict[str, float] = {}
        for start in range(0, len(new), self.chunk):
            part = new[start : start + self.chunk]
            vectors = await self._embed(part)
            self.embedded += len(part)
            for sentence, margin in zip(part, self._margins(vectors), strict=True):
                _put(self._sentences, sentence, float(margin), self.cache_size)
                embedded[sentence] = float(margin)
        if store is not None and embedded:
            await store.put(self.version, embedded)
        for text, parts in split.items():
            scores = [self._sentences.get(s) for s in parts]
            known = [s for s in scores if s is not None]
            _put(self._texts, text, max(known) if known else -1.0, self.cache_size)

    def _margins(self, vectors: np.ndarray) -> np.ndarray:
        assert self._exemplars is not None
        instructions, benign = self._exemplars
        k = self.k

        def top_mean(sims: np.ndarray) -> np.ndarray:
            kk = min(k, sims.shape[1])
            return np.sort(sims, axis=1)[:, -kk:].mean(axis=1)

        return top_mean(vectors @ instructions.T) - top_mean(vectors @ benign.T)


def _version(model: str, k: int, instructions: Sequence[str], benign: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for part in (model, str(k), *instructions, "\x00", *benign):
        digest.update(part.encode())
        digest.update(b"\x1f")
    return f"k{k}-{digest.hexdigest()[:16]}"


def _put(cache: OrderedDict[str, float], key: str, value: float, size: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


@dataclass(frozen=True)
class Threshold:
    """A threshold and what it does on the texts it was chosen on."""

    value: float
    true_positive_rate: float
    false_positive_rate: float


def choose_threshold(
    attack_scores: Sequence[float], benign_scores: Sequence[float], max_fpr: float = 0.02
) -> Threshold:
    """The lowest threshold whose false-positive rate on ``benign_scores`` is at most
    ``max_fpr`` (so the most attacks are caught at that cost), placed halfway to the
    next benign score above it."""
    benign = np.sort(np.asarray(benign_scores, dtype=float))
    attacks = np.asarray(attack_scores, dtype=float)
    allowed = int(np.floor(max_fpr * len(benign)))
    # flagged benign = those >= threshold; keep at most `allowed` of them
    cut = benign[len(benign) - allowed - 1] if allowed < len(benign) else benign[0] - 1e-6
    above = benign[benign > cut]
    value = float((cut + above.min()) / 2) if above.size else float(cut + 1e-3)
    return Threshold(
        value=value,
        true_positive_rate=float((attacks >= value).mean()) if attacks.size else 0.0,
        false_positive_rate=float((benign >= value).mean()) if benign.size else 0.0,
    )


def calibrate(
    attack_scores: Sequence[float],
    lookalike_scores: Sequence[float],
    ordinary_scores: Sequence[float],
) -> Threshold:
    """The threshold of the calibration rule: the lowest one that flags at most
    :data:`MAX_FPR_LOOKALIKES` of the benign look-alikes (ordinary text written to
    resemble instructions) and at most :data:`MAX_FPR_ORDINARY` of ordinary catalog text
    and queries; its rates are reported on all benign texts together."""
    value = max(
        choose_threshold(attack_scores, lookalike_scores, MAX_FPR_LOOKALIKES).value,
        choose_threshold(attack_scores, ordinary_scores, MAX_FPR_ORDINARY).value,
    )
    attacks = np.asarray(attack_scores, dtype=float)
    benign = np.asarray([*lookalike_scores, *ordinary_scores], dtype=float)
    return Threshold(
        value=value,
        true_positive_rate=float((attacks >= value).mean()) if attacks.size else 0.0,
        false_positive_rate=float((benign >= value).mean()) if benign.size else 0.0,
    )
