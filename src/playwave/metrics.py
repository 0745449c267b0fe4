"""Prometheus metrics of the server process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "playwave_http_requests_total",
    "HTTP requests by route, method and status",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "playwave_http_request_seconds",
    "HTTP request latency by route",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SESSIONS_STARTED = Counter("playwave_sessions_started_total", "Game sessions created by verify")
SESSIONS_ENDED = Counter(
    "playwave_sessions_ended_total", "Game sessions ended, by end reason", ["reason"]
)
LIVE_SESSIONS = Gauge("playwave_live_sessions", "Live game sessions in the records")
VERIFY_RESULTS = Counter("playwave_verify_total", "Verify outcomes by reason", ["reason"])
PARTNER_CALLS = Counter(
    "playwave_partner_calls_total", "Partner calls by kind and outcome", ["kind", "outcome"]
)
PARTNER_QUEUE = Gauge("playwave_partner_queue_due", "Partner calls waiting in the durable queue")
PARTNER_QUEUE_LAG = Gauge(
    "playwave_partner_queue_lag_seconds",
    "How long the oldest due partner call has waited past its due time (0 when none is due)",
)
JOB_ERRORS = Counter("playwave_job_errors_total", "Background job iterations that failed", ["job"])
