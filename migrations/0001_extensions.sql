-- pgvector for item embeddings and CF factors; pg_trgm for text filters on titles.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
