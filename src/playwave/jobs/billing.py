"""Billing upkeep: usage reports, the partner call queue and its size gauge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from playwave.jobs.runner import Job
from playwave.services.billing import Billing

if TYPE_CHECKING:
    from playwave.runtime import Runtime

# Usage reports are due on the second, so the scan runs every second; a scan with nothing due
# is one indexed query.
USAGE_SCAN_INTERVAL_SEC = 1.0
DISPATCH_INTERVAL_SEC = 1.0
QUEUE_GAUGE_INTERVAL_SEC = 15.0


def billing_jobs(runtime: Runtime) -> list[Job]:
    """Return the billing jobs of `runtime`; any number of processes may run them at once."""
    billing = Billing(
        runtime.records, runtime.live, runtime.partner, runtime.clock, runtime.settings.timers
    )
    return [
        Job("report_usage", USAGE_SCAN_INTERVAL_SEC, billing.queue_usage_reports),
        Job("dispatch_partner_calls", DISPATCH_INTERVAL_SEC, billing.dispatch_partner_calls),
        Job("count_partner_queue", QUEUE_GAUGE_INTERVAL_SEC, billing.update_queue_gauge),
    ]
