"""The run's chart: live sessions and calls per second over the simulated day (PNG)."""

from __future__ import annotations

import itertools
from pathlib import Path

from playwave.simulate.engine import RunResult


def draw_chart(result: RunResult, path: Path) -> None:
    """Draw two stacked panels against simulated hours and save them as a PNG.

    matplotlib comes with the `simulate` extra; the Agg backend draws without a display.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result.world.stats.samples
    hours = [sample.simulated_hours for sample in samples]
    figure, (sessions_axis, calls_axis) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, constrained_layout=True
    )

    sessions_axis.plot(hours, [sample.live_sessions for sample in samples], color="tab:blue")
    sessions_axis.set_ylabel("live game sessions")
    sessions_axis.grid(alpha=0.3)

    errors_per_second = [0.0]
    for previous, current in itertools.pairwise(samples):
        elapsed = current.real_seconds - previous.real_seconds
        errors_per_second.append((current.errors - previous.errors) / elapsed if elapsed else 0.0)
    calls_axis.plot(
        hours, [sample.calls_per_second for sample in samples], color="tab:green", label="calls/s"
    )
    calls_axis.plot(hours, errors_per_second[: len(hours)], color="tab:red", label="errors/s")
    calls_axis.set_ylabel("per real second")
    calls_axis.set_xlabel("simulated hours")
    calls_axis.legend(loc="upper right")
    calls_axis.grid(alpha=0.3)

    config = result.config
    figure.suptitle(
        f"{config.cafes} cafes × {config.seats} seats, {config.games} games, "
        f"time scale {config.time_scale:g}"
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)
