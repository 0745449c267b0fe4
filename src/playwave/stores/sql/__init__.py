"""SQL stores through SQLAlchemy Core: SQLite (embedded default) and PostgreSQL (asyncpg)."""
