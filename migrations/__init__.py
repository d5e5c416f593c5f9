"""Alembic migrations, shipped inside the package as `worker.migrations` (see pyproject.toml)."""
