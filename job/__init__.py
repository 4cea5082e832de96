"""migrate-job: a PostgreSQL schema-migration runner for one-shot deploy jobs."""

__version__ = "0.1.0"
