"""Engine creation and schema migration for the SQL stores."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from playwave.stores.base import StoreUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """Create an async engine for `url` (sqlite+aiosqlite or postgresql+asyncpg).

    SQLite runs with WAL so that the CLI can read and write beside a running server, and every
    transaction starts with BEGIN IMMEDIATE so that two processes never deadlock upgrading a
    read lock. A process uses one SQLite connection, which serialises its own writers.
    """
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            connect_args={"timeout": 30, "isolation_level": None},
        )
        _configure_sqlite(engine)
        return engine
    # No ping on checkout, because it would add a round trip to every store call. A connection
    # that the server dropped fails its next statement as a disconnect, which invalidates the
    # whole pool and raises StoreUnavailable for that one call. Connections are also renewed
    # every half hour, before a firewall or proxy drops them.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        pool_recycle=1800,
        connect_args={"timeout": 5, "command_timeout": 10},
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_schema(url: str, revision: str = "heads") -> None:
    """Apply migrations up to `revision` (blocking; run it in a thread from async code)."""
    if make_url(url).get_backend_name() == "sqlite":
        Path(make_url(url).database or "").parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


async def upgrade_schema_async(url: str) -> None:
    await asyncio.to_thread(upgrade_schema, url)


UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    TimeoutError,
)


def is_unavailable(error: BaseException) -> bool:
    """Tell whether `error` means the database could not be reached, as opposed to a bug.

    SQLite's "database is locked" counts too: it comes only after the 30 s busy timeout, and
    the caller may retry it like an outage.
    """
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, UNAVAILABLE_ERRORS)


def translate_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn connection failures raised by `func` into `StoreUnavailable`."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await func(*args, **kwargs)
        except StoreUnavailable:
            raise
        except Exception as error:
            if is_unavailable(error):
                raise StoreUnavailable(f"database unavailable: {type(error).__name__}") from error
            raise

    return wrapper
