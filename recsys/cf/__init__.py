"""Collaborative filtering: batch ALS with request-time fold-in, time-decayed popularity,
and (nearline) item-to-item co-visitation. Offline models need no database; the ``Pg*``
classes serve the same answers from Postgres + pgvector."""
