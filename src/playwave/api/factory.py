"""The application factory uvicorn calls in each API process."""

from __future__ import annotations

import os

from fastapi import FastAPI

from playwave.api.app import create_app
from playwave.logs import configure_logging
from playwave.settings import Settings


def app_from_environment() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    run_jobs = os.environ.get("PLAYWAVE_SERVE_JOBS", "1" if settings.embedded else "0") == "1"
    return create_app(settings, run_jobs=run_jobs)
