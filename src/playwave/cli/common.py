"""Helpers shared by the CLI commands: the runtime, JSON output and error exits."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console

from playwave.cli.i18n import t
from playwave.runtime import Runtime, build_runtime
from playwave.settings import Settings
from playwave.stores.base import StoreUnavailable

console = Console()
error_console = Console(stderr=True)
T = TypeVar("T")


@asynccontextmanager
async def open_runtime(settings: Settings | None = None) -> AsyncIterator[Runtime]:
    """Open the same data the server uses; the schema is migrated on the embedded default."""
    runtime = await build_runtime(settings or Settings())
    try:
        yield runtime
    finally:
        await runtime.close()


def run(work: Callable[[Runtime], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run `work` with a runtime and turn store outages into a clear exit."""

    async def main() -> T:
        async with open_runtime(settings) as runtime:
            return await work(runtime)

    try:
        return asyncio.run(main())
    except StoreUnavailable as error:
        fail(t("store_unavailable", detail=error))
    except ValueError as error:
        fail(t("invalid_value", detail=error))


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, sort_keys=True) + "\n")


def fail(message: str, code: int = 1) -> Any:
    error_console.print(f"[red]{message}[/red]")
    raise typer.Exit(code)
