"""Revision files (Alembic loads them by path; the package only makes them ship in the wheel)."""
