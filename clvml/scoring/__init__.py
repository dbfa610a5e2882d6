"""Scoring: the scheduled job (DuckDB and Spark), the model bundle it reads, and the drift check."""
