"""Declarative base shared by every model."""

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# The names PostgreSQL itself gives unnamed constraints. Deployed databases were built from the
# spec's plain SQL (unnamed constraints), so matching them lets `alembic stamp` adopt such a
# database and later revisions refer to its constraints by the same names.
NAMING_CONVENTION = {
    "pk": "%(table_name)s_pkey",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
}


# Who owns a table or column. The host application's tables (users, portfolios, symbol_universe,
# market_data_cache, symbol_factor_exposures) are modelled in the shape a fresh install creates
# (revision 0001); in a host's database the host's own shapes rule and the project never compares
# or changes them, except the columns it adds (marked PROJECT_COLUMN). Every other table is the
# project's. worker/core/schema.py derives the Alembic filters from these marks.
HOST_TABLE = {"owner": "host"}
PROJECT_COLUMN = {"owner": "project"}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
