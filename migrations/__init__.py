"""Alembic migrations of the saga log's schema (shipped as ``saga.migrations``)."""
