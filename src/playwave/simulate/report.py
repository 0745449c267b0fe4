"""The run's report: report.json, report.md, timeline.csv, sessions.csv and a chart."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

from playwave.domain.billing import charge_for
from playwave.simulate.config import timer_rounding
from playwave.simulate.engine import RunResult
from playwave.simulate.ledger import BillingMismatch

CHART_FILE = "chart.png"
MAX_LISTED = 50


def summarize(result: RunResult) -> dict[str, Any]:
    """Return the report's numbers as one JSON-ready object."""
    config = result.config
    world = result.world
    stats = world.stats
    ended = [record for record in result.records.values() if record is not None]

    end_reasons = Counter(
        record.end_reason.value if record.end_reason else "NOT_ENDED" for record in ended
    )
    expected_vs_actual: Counter[str] = Counter()
    for game_session_id, truth in world.truths.items():
        record = result.records.get(game_session_id)
        actual = record.end_reason.value if record and record.end_reason else "NOT_ENDED"
        expected = truth.expected_end.value if truth.expected_end else "UNEXPECTED"
        expected_vs_actual[f"{expected} -> {actual}"] += 1

    return {
        "config": {
            "url": config.url,
            "cafes": config.cafes,
            "seats_per_cafe": config.seats,
            "games": config.games,
            "simulated_hours": config.hours,
            "time_scale": config.time_scale,
            "seed": config.seed,
            "max_in_flight": config.max_in_flight,
        },
        "server_settings": result.server_settings,
        "timer_rounding": timer_rounding(config.time_scale),
        "real_seconds": round(result.real_seconds, 1),
        "sessions": len(world.truths),
        "launcher_sessions": len(world.launchers),
        "end_reasons": dict(sorted(end_reasons.items())),
        "expected_vs_actual_end": dict(sorted(expected_vs_actual.items())),
        "sessions_not_ended": sum(
            1
            for game_session_id in world.truths
            if (record := result.records.get(game_session_id)) is None or record.ended_at is None
        ),
        "billing_mismatches": len(result.mismatches),
        "billing_mismatch_examples": [
            _mismatch_example(result, mismatch) for mismatch in result.mismatches[:MAX_LISTED]
        ],
        "billing": _billing_summary(result),
        "contract_violations": stats.violation_count,
        "contract_violation_examples": [
            {
                "endpoint": v.endpoint,
                "status": v.status,
                "problem": v.problem,
                "request_id": v.request_id,
            }
            for v in stats.violations[:MAX_LISTED]
        ],
        "calls": stats.total_calls,
        "calls_by_endpoint": dict(sorted(stats.calls.items())),
        "outcomes": {
            f"{endpoint} {outcome}": n for (endpoint, outcome), n in sorted(stats.outcomes.items())
        },
        "errors_by_code": dict(stats.errors_by_code.most_common()),
        "latency_ms": stats.latency_percentiles(),
        "events": dict(sorted(world.events.items())),
        "unfinished_tasks": result.unfinished_tasks,
        "settlement_preview": _settlement_preview(result),
        "passed": not result.failed,
    }


def _mismatch_example(result: RunResult, mismatch: BillingMismatch) -> dict[str, Any]:
    """Return a mismatch with the record's times and the last heartbeats the simulation sent."""
    record = result.records.get(mismatch.game_session_id)
    truth = result.world.truths[mismatch.game_session_id]
    return {
        "game_session_id": mismatch.game_session_id,
        "end_reason": mismatch.end_reason,
        "problem": mismatch.problem,
        "record": None
        if record is None
        else {
            "started_at": record.started_at,
            "last_heartbeat_at": record.last_heartbeat_at,
            "ended_at": record.ended_at,
            "exhausted_at": record.exhausted_at,
            "grace_started_at": record.grace_started_at,
        },
        "recent_heartbeats_sent_received_outcome": truth.recent_heartbeats,
    }


def _billing_summary(result: RunResult) -> dict[str, Any]:
    """Compare the server's billed seconds with the simulation's own measurements."""
    normal_differences = []
    billed = 0
    for game_session_id, truth in result.world.truths.items():
        record = result.records.get(game_session_id)
        if record is None or record.billable_sec is None:
            continue
        billed += record.billable_sec
        if truth.client_play_duration_sec is not None and truth.end_play_duration_sec is not None:
            normal_differences.append(record.play_duration_sec - truth.client_play_duration_sec)
    differences = Counter(normal_differences)
    return {
        "billable_seconds": billed,
        "billable_simulated_hours": round(billed * result.config.time_scale / 3600, 1),
        "normal_end_server_minus_client_sec": dict(sorted(differences.items())),
    }


def _settlement_preview(result: RunResult) -> list[dict[str, Any]]:
    """Return per-game totals of this run's sessions, as a monthly statement would count them.

    The amount is the game's rate applied to the total billable seconds, rounded down.
    """
    names = {game.game_id: game.name for game in result.world.games}
    rows: dict[str, dict[str, Any]] = {}
    users: dict[str, set[str]] = {}
    for record in result.records.values():
        if record is None or record.billable_sec is None:
            continue
        row = rows.setdefault(
            record.game_id,
            {
                "game_id": record.game_id,
                "name": names.get(record.game_id, record.game_id),
                "rate_per_hour": record.rate_per_hour,
                "sessions": 0,
                "play_seconds": 0,
                "billable_seconds": 0,
            },
        )
        row["sessions"] += 1
        row["play_seconds"] += record.play_duration_sec or 0
        row["billable_seconds"] += record.billable_sec
        users.setdefault(record.game_id, set()).add(record.provider_user_id)
    for game_id, row in rows.items():
        row["unique_users"] = len(users[game_id])
        row["amount"] = charge_for(row["billable_seconds"], row["rate_per_hour"])
    return sorted(rows.values(), key=lambda row: row["name"])


def write_report(result: RunResult, out_dir: Path) -> dict[str, Any]:
    """Write every report file into `out_dir` and return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    _write_timeline(result, out_dir / "timeline.csv")
    _write_sessions(result, out_dir / "sessions.csv")

    from playwave.simulate.chart import draw_chart

    draw_chart(result, out_dir / CHART_FILE)
    (out_dir / "report.md").write_text(render_markdown(summary))
    return summary


def _write_timeline(result: RunResult, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "simulated_hours",
                "real_seconds",
                "live_sessions",
                "calls",
                "errors",
                "calls_per_second",
            ]
        )
        for sample in result.world.stats.samples:
            writer.writerow(
                [
                    f"{sample.simulated_hours:.3f}",
                    f"{sample.real_seconds:.1f}",
                    sample.live_sessions,
                    sample.calls,
                    sample.errors,
                    f"{sample.calls_per_second:.1f}",
                ]
            )


def _write_sessions(result: RunResult, path: Path) -> None:
    problems: dict[str, list[str]] = {}
    for mismatch in result.mismatches:
        problems.setdefault(mismatch.game_session_id, []).append(mismatch.problem)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "game_session_id",
                "game_id",
                "cafe_index",
                "pc_id",
                "expected_end",
                "end_reason",
                "started_at",
                "ended_at",
                "play_duration_sec",
                "billable_sec",
                "client_play_duration_sec",
                "billing_problems",
            ]
        )
        for game_session_id, truth in result.world.truths.items():
            record = result.records.get(game_session_id)
            writer.writerow(
                [
                    game_session_id,
                    truth.game_id,
                    truth.cafe_index,
                    truth.pc_id,
                    truth.expected_end.value if truth.expected_end else "",
                    record.end_reason.value if record and record.end_reason else "",
                    record.started_at if record else "",
                    record.ended_at if record and record.ended_at else "",
                    record.play_duration_sec if record else "",
                    record.billable_sec if record else "",
                    truth.client_play_duration_sec
                    if truth.client_play_duration_sec is not None
                    else "",
                    "; ".join(problems.get(game_session_id, [])),
                ]
            )


def render_markdown(summary: dict[str, Any]) -> str:
    """Render the summary as a Markdown report."""
    config = summary["config"]
    verdict = "PASSED" if summary["passed"] else "FAILED"
    lines = [
        f"# PlayWave simulation: {verdict}",
        "",
        f"{config['cafes']} cafes × {config['seats_per_cafe']} seats, {config['games']} games, "
        f"{config['simulated_hours']:g} simulated hours at time scale {config['time_scale']:g} "
        f"(seed {config['seed']}), {summary['real_seconds']:g} real seconds.",
        "",
        f"- Game sessions: {summary['sessions']}",
        f"- Launcher sessions: {summary['launcher_sessions']}",
        f"- Calls: {summary['calls']}",
        f"- Contract violations: {summary['contract_violations']}",
        f"- Billing mismatches: {summary['billing_mismatches']}",
        f"- Sessions not ended after the run: {summary['sessions_not_ended']}",
        f"- Billable time: {summary['billing']['billable_seconds']} server seconds "
        f"({summary['billing']['billable_simulated_hours']:g} simulated hours)",
        "",
        f"![Live sessions and calls over the simulated day]({CHART_FILE})",
        "",
        "## Sessions by end reason",
        "",
        "| end reason | sessions |",
        "|---|---:|",
    ]
    lines += [f"| {reason} | {count} |" for reason, count in summary["end_reasons"].items()]
    lines += [
        "",
        "## Expected end against the server's end reason",
        "",
        "UNEXPECTED marks a session the server ended although the simulation did nothing that "
        "should end it (for example a heartbeat that arrived too late on an overloaded machine).",
        "",
        "| expected -> actual | sessions |",
        "|---|---:|",
    ]
    lines += [f"| {pair} | {count} |" for pair, count in summary["expected_vs_actual_end"].items()]
    differences = summary["billing"]["normal_end_server_minus_client_sec"]
    lines += [
        "",
        "## Billed time against the simulation's truth",
        "",
        "Server play seconds minus the game server's own count, for normal ends:",
        "",
        "| difference (s) | sessions |",
        "|---:|---:|",
    ]
    lines += [f"| {difference} | {count} |" for difference, count in differences.items()]
    if summary["billing_mismatch_examples"]:
        lines += ["", "Billing mismatches (first ones):", ""]
        lines += [
            f"- `{m['game_session_id']}` ({m['end_reason']}): {m['problem']}"
            for m in summary["billing_mismatch_examples"]
        ]
    lines += ["", "## Contract violations", ""]
    if summary["contract_violation_examples"]:
        lines += [
            f"- {v['endpoint']} HTTP {v['status']}: {v['problem']} ({v['request_id']})"
            for v in summary["contract_violation_examples"]
        ]
    else:
        lines.append("None.")
    lines += [
        "",
        "## Settlement preview",
        "",
        "| game | sessions | users | play s | billable s | rate/h | amount |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {row['name']} | {row['sessions']} | {row['unique_users']} | {row['play_seconds']} | "
        f"{row['billable_seconds']} | {row['rate_per_hour']} | {row['amount']} |"
        for row in summary["settlement_preview"]
    ]
    lines += [
        "",
        "## Calls",
        "",
        "| endpoint | calls | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for endpoint, count in summary["calls_by_endpoint"].items():
        latency = summary["latency_ms"].get(endpoint, {})
        lines.append(
            f"| {endpoint} | {count} | {latency.get('p50', '')} | {latency.get('p95', '')} | "
            f"{latency.get('p99', '')} | {latency.get('max', '')} |"
        )
    lines += ["", "Errors by code:", ""]
    lines += [f"- {code}: {count}" for code, count in summary["errors_by_code"].items()] or [
        "- none"
    ]
    lines += ["", "## Behaviour events", ""]
    lines += [f"- {event}: {count}" for event, count in summary["events"].items()]
    lines += ["", "## Server settings used", "", "```"]
    lines += [f"{name}={value}" for name, value in summary["server_settings"].items()]
    lines += ["```", ""]
    if summary["timer_rounding"]:
        lines += ["Timers rounded to whole seconds: " + "; ".join(summary["timer_rounding"]), ""]
    return "\n".join(lines)
