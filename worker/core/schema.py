"""What this project owns in a database, and the Alembic filters that follow from it.

The project shares a database with a host application that has its own tables and its own Alembic
chain. The project owns its tables (every model not marked HOST_TABLE, see worker/models/base.py),
the four columns the spec adds to the host's `symbol_universe`, its functions and triggers, and
its version table, `symbol_onboarding_alembic_version` (the host's `alembic_version` is never read
or written). Everything else is the host's.

Two filters for Alembic's `include_object`:

- `include_object`: the project's own autogenerate and `alembic check` compare only what the
  project owns, so they pass on a host's database (migrations/env.py uses it).
- `include_host_object`: for the HOST's env.py, so the host's autogenerate never proposes dropping
  the project's tables or columns::

      from worker.core.schema import include_host_object
      context.configure(..., include_object=include_host_object)
"""

from typing import Any

from worker.models import Base
from worker.models.base import HOST_TABLE, PROJECT_COLUMN

VERSION_TABLE = "symbol_onboarding_alembic_version"

HOST_TABLES = frozenset(
    t.name for t in Base.metadata.tables.values() if t.info.get("owner") == HOST_TABLE["owner"]
)
PROJECT_TABLES = frozenset(Base.metadata.tables) - HOST_TABLES
# Columns the project adds to host tables, by table.
PROJECT_COLUMNS: dict[str, frozenset[str]] = {
    table.name: columns
    for table in Base.metadata.tables.values()
    if table.name in HOST_TABLES
    and (
        columns := frozenset(
            c.name for c in table.columns if c.info.get("owner") == PROJECT_COLUMN["owner"]
        )
    )
}


def _owner_table(obj: Any, name: str | None, type_: str) -> str | None:
    if type_ == "table":
        return name
    table = getattr(obj, "table", None)
    return getattr(table, "name", None)


def owned_by_project(obj: Any, name: str | None, type_: str) -> bool:
    """Whether an object Alembic compares (table, column, index, constraint) is the project's."""
    table = _owner_table(obj, name, type_)
    if table in PROJECT_TABLES or table == VERSION_TABLE:
        return True
    if type_ == "column":
        return name in PROJECT_COLUMNS.get(table or "", ())
    return False


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """The project's autogenerate filter: only what the project owns.

    A host table that holds project columns (`symbol_universe`) is included so that those columns
    are compared; its other columns, indexes and constraints are the host's and are not.
    """
    if type_ == "table":
        return name in PROJECT_TABLES or name in PROJECT_COLUMNS
    return owned_by_project(obj, name, type_)


def include_host_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """The host's autogenerate filter: everything except what this project owns.

    Combine it with a filter of your own as `include_host_object(*a) and yours(*a)`.
    """
    return not owned_by_project(obj, name, type_)
