"""Alembic migrations of the store, one module per revision under versions/."""
