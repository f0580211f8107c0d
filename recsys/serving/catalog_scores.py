"""Catalog text scored for instruction-likeness ahead of serving (when items are written).

The serve path screens candidates' titles and descriptions with the instruction scorer
before quoting them into a prompt; :func:`score_catalog` scores the same texts (what
:func:`~recsys.serving.untrusted.scoring_texts` says the scorer will read) when the items
are written, through a scorer with a :class:`~recsys.textsafety.margins.MarginStore`, so
serving finds the margins stored instead of embedding catalog text itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from recsys.records import CatalogChange, ChangeOp, ItemEnriched
from recsys.serving.untrusted import scoring_texts
from recsys.textsafety.instruction import InstructionScorer

__all__ = ["score_catalog"]


async def score_catalog(
    scorer: InstructionScorer, changes: Sequence[CatalogChange], written: Sequence[ItemEnriched]
) -> int:
    """Score (and store) the title and description of every change that was written.

    Returns:
        How many texts were scored.
    """
    applied = {e.item_id for e in written if not e.deleted}
    texts = scoring_texts(
        [
            text
            for c in changes
            if c.item_id in applied and c.op is ChangeOp.UPSERT
            for text in (c.title, c.description)
        ]
    )
    if texts:
        await scorer.scores(texts, catalog=True)
    return len(texts)
