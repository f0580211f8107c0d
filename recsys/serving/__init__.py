"""Serving: answer a recommendation request through the routed CF-or-content pipeline.

No Kafka here: the ``serve`` worker decodes requests, calls :class:`Recommender`, and
emits what it returns. Data arrives through the small ports of :mod:`.ports`, so the same
code serves from Postgres + pgvector in production and from memory in a replay.
"""
