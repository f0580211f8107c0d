"""Per-user state (warmth, engagement, recent items, session) and its Postgres read model."""
