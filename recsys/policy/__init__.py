"""Serving policies as data: the model (rules per cell, exploration, exact propensities),
logged decisions, the candidate space, off-policy estimators, the selection rule, and
versions in Postgres. No Kafka here (``streamrec learn-policy`` is the job over it)."""
