"""The daemon's durable store: SQLAlchemy 2 models, Alembic migrations, transactional access."""
