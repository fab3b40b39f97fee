"""Alembic migrations: the only owner of the registry schema."""
