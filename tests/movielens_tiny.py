"""A tiny MovieLens folder (movies, tags, ratings) whose A/B query set is known by hand.

Tags: ``caper``, ``atmospheric`` (three spellings) and ``space`` are eligible; ``heist``
is in a relevant title, ``sci-fi`` is a genre, ``in netflix queue`` is a meta tag and
``dark comedy`` has one movie. Users 10 and 12 have conversations; user 11 has one
positive rating and none.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.evaluation.enrich_ab import AbOptions, load_query_set, run_enrichment_ab
from recsys.movielens import MovieLens

__all__ = ["HashingEmbedder", "tiny_ab_report", "write_tiny_movielens"]

MOVIES = """movieId,title,genres
1,Heat (1995),Action|Crime|Thriller
2,Alien (1979),Horror|Sci-Fi
3,"Big Lebowski, The (1998)",Comedy|Crime
4,Ocean's Eleven (2001),Crime|Thriller
5,"Italian Job, The (1969)",Action|Comedy|Crime
6,Toy Story (1995),Adventure|Animation|Children|Comedy
7,Heist (2001),Crime|Drama
8,Aliens (1986),Action|Sci-Fi
9,Untagged Movie (2000),Drama
"""
TAGS = """userId,movieId,tag,timestamp
10,1,caper,100
10,4,caper,101
11,5,caper,102
10,7,heist,103
11,1,heist,104
11,4,heist,105
12,2,space,106
12,8,space,107
11,6,space,108
12,2,sci-fi,109
12,8,sci-fi,110
11,6,sci-fi,111
11,1,in netflix queue,112
11,2,in netflix queue,113
11,3,in netflix queue,114
10,3,dark comedy,115
10,1,Atmospheric,116
10,2,atmospheric ,117
11,8,ATMOSPHERIC,118
"""
RATINGS = """userId,movieId,rating,timestamp
10,6,5.0,1
10,3,4.5,2
10,2,2.0,3
10,9,4.0,4
10,1,5.0,5
11,5,5.0,1
11,1,3.0,2
12,3,4.0,1
12,4,5.0,2
"""


def write_tiny_movielens(folder: Path) -> Path:
    """Write the three CSV files into ``folder`` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("movies.csv", MOVIES), ("tags.csv", TAGS), ("ratings.csv", RATINGS)):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


class HashingEmbedder:
    """Bag of words hashed into 64 dimensions (our own Embedder port, no model)."""

    name = "hashing-test-embedder"
    dim = 64

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] /= norm if norm else 1.0
        return out


def tiny_ab_report(folder: Path) -> dict[str, Any]:
    """An A/B report of the tiny set without an LLM (hashing embedder): the JSON shape
    `streamrec ab-enrich --json` writes."""
    qs = load_query_set(MovieLens(write_tiny_movielens(folder)))
    return run_enrichment_ab(qs, HashingEmbedder(), opts=AbOptions(resamples=200))
