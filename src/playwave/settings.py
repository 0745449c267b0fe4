"""Settings, read from `PLAYWAVE_*` environment variables and an optional `.env` file."""

from __future__ import annotations

import secrets
from functools import cached_property
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from playwave.domain.lifecycle import Timers


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLAYWAVE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        Path("playwave-data"), description="Directory of the embedded SQLite file"
    )
    database_url: str | None = Field(
        None, description="postgresql://user@host:port/db; unset = SQLite"
    )
    redis_url: str | None = Field(
        None, description="redis://host:port/db; unset = live state in SQL"
    )
    redis_cluster: Literal["auto", "yes", "no"] = Field(
        "auto", description="Use the Redis Cluster client: yes, no, or auto (ask the server)"
    )
    redis_prefix: str = Field(
        "pw",
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of every Redis key, to share one Redis between deployments",
    )
    partner_url: str | None = Field(
        None, description="Partner base URL; unset = in-process sandbox"
    )
    partner_token: str | None = Field(None, description="Bearer token sent to the partner")
    secret_key: str | None = Field(
        None,
        description="Server secret for keyed hashes and launcher secrets; generated into the data "
        "directory when unset in embedded mode",
    )

    ott_ttl_sec: int = Field(60, ge=1)
    heartbeat_interval_sec: int = Field(120, ge=1)
    session_ttl_sec: int = Field(240, ge=1)
    charge_grace_sec: int = Field(120, ge=0)
    launcher_heartbeat_sec: int = Field(60, ge=1)
    launcher_timeout_sec: int = Field(240, ge=1)
    usage_report_interval_sec: int = Field(60, ge=1)
    replaced_answer_sec: int = Field(
        3600, ge=0, description="How long heartbeats of a replaced session answer SESSION_REPLACED"
    )

    sweep_interval_sec: float = Field(1.0, gt=0)
    heartbeat_flush_sec: float = Field(2.0, gt=0)
    api_key_cache_sec: float = Field(2.0, ge=0)
    max_body_bytes: int = Field(16_384, ge=256)
    # Idle HTTP connections stay open longer than one launcher heartbeat interval, so a
    # launcher reuses its connection instead of opening one per heartbeat.
    keep_alive_sec: int = Field(75, ge=1)
    rate_limit_per_key_per_min: int = Field(6000, ge=1)
    rate_limit_per_ip_per_min: int = Field(12000, ge=1)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    sandbox_loopback_cafe: bool = Field(
        True, description="In the sandbox partner, treat loopback clients as the demo cafe"
    )

    benchmark_routes: bool = Field(
        False,
        description="Serve the no-op route /v1/bench/noop that benchmarks compare against; "
        "keep off in production",
    )

    settlement_timezone: str = "Asia/Seoul"
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            ip_network(item, strict=False)
        return value

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def timers(self) -> Timers:
        return Timers(
            ott_ttl_ms=self.ott_ttl_sec * 1000,
            heartbeat_interval_sec=self.heartbeat_interval_sec,
            session_ttl_ms=self.session_ttl_sec * 1000,
            charge_grace_ms=self.charge_grace_sec * 1000,
            launcher_heartbeat_sec=self.launcher_heartbeat_sec,
            launcher_timeout_ms=self.launcher_timeout_sec * 1000,
            usage_report_interval_ms=self.usage_report_interval_sec * 1000,
            replaced_answer_ms=self.replaced_answer_sec * 1000,
        )

    @cached_property
    def sqlalchemy_url(self) -> str:
        """Return the SQLAlchemy URL of the records database, with the async driver named."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'playwave.sqlite3').resolve()}"
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        return url

    def resolve_secret_key(self) -> bytes:
        """Return the server secret, creating one in the data directory in embedded mode."""
        if self.secret_key:
            return self.secret_key.encode()
        if not self.embedded:
            raise RuntimeError(
                "PLAYWAVE_SECRET_KEY is required with PLAYWAVE_DATABASE_URL: every process must "
                "share one secret to check API keys and launcher signatures"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip().encode()
