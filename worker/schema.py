"""The import path hosts already use for the Alembic filters for a host's env.py; it lives in worker.core.schema."""

from worker.core.schema import (
    HOST_TABLES,
    PROJECT_TABLES,
    VERSION_TABLE,
    include_host_object,
    include_object,
    owned_by_project,
)

__all__ = [
    "HOST_TABLES",
    "PROJECT_TABLES",
    "VERSION_TABLE",
    "include_host_object",
    "include_object",
    "owned_by_project",
]
