"""The local stack: embedded broker, Postgres, LLM and the process supervisor."""
