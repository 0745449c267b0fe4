"""Counters of the calls the simulation made: per endpoint, per error code and per second."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from playwave.simulate.contract import Violation

# How many violations are kept verbatim; the rest are only counted.
MAX_KEPT_VIOLATIONS = 200


@dataclass
class Sample:
    """The state of the simulation at one moment of the run."""

    simulated_hours: float
    real_seconds: float
    live_sessions: int
    calls: int
    errors: int
    calls_per_second: float


@dataclass
class CallStats:
    calls: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors_by_code: Counter[str] = field(default_factory=Counter)
    latency_ms: dict[str, list[int]] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    violation_count: int = 0
    total_calls: int = 0
    total_errors: int = 0
    samples: list[Sample] = field(default_factory=list)
    _recent: deque[tuple[float, int]] = field(default_factory=deque)

    def record(
        self,
        endpoint: str,
        status: int,
        code: str | None,
        latency_ms: int,
        violations: tuple[Violation, ...],
    ) -> None:
        """Count one call; `code` is the error code, or a business result on HTTP 200."""
        self.total_calls += 1
        self.calls[endpoint] += 1
        self.outcomes[(endpoint, f"{status} {code}" if code else str(status))] += 1
        if status != 200:
            self.total_errors += 1
            self.errors_by_code[code or f"HTTP_{status}"] += 1
        self.latency_ms.setdefault(endpoint, []).append(latency_ms)
        for violation in violations:
            self.violation_count += 1
            if len(self.violations) < MAX_KEPT_VIOLATIONS:
                self.violations.append(violation)

    def add_violation(self, violation: Violation) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_KEPT_VIOLATIONS:
            self.violations.append(violation)

    def calls_per_second(self, real_now: float, window: float = 5.0) -> float:
        """Return the call rate over the last `window` real seconds."""
        self._recent.append((real_now, self.total_calls))
        while len(self._recent) > 1 and self._recent[0][0] < real_now - window:
            self._recent.popleft()
        first_time, first_calls = self._recent[0]
        elapsed = real_now - first_time
        return (self.total_calls - first_calls) / elapsed if elapsed > 0 else 0.0

    def latency_percentiles(self) -> dict[str, dict[str, int]]:
        """Return p50, p95, p99 and max latency in milliseconds per endpoint."""
        table = {}
        for endpoint, values in sorted(self.latency_ms.items()):
            ordered = sorted(values)
            table[endpoint] = {
                "p50": _percentile(ordered, 0.50),
                "p95": _percentile(ordered, 0.95),
                "p99": _percentile(ordered, 0.99),
                "max": ordered[-1],
            }
        return table


def _percentile(ordered: list[int], fraction: float) -> int:
    index = min(len(ordered) - 1, int(fraction * len(ordered)))
    return ordered[index]
