"""Month boundaries and the splitting of sessions at them."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playwave.domain.billing import charge_for
from playwave.domain.settlement import (
    Month,
    Tally,
    month_bounds,
    month_containing,
    piece_in_month,
    split_session,
)

SEOUL = "Asia/Seoul"
# 2026-01-31T23:50:00+09:00
JAN_31_2350 = month_bounds(Month(2026, 2), SEOUL)[0] - 10 * 60 * 1000


def test_month_bounds_are_seoul_midnights():
    start, end = month_bounds(Month(2026, 1), SEOUL)

    assert start == 1_767_193_200_000  # 2025-12-31T15:00:00Z
    assert end == 1_769_871_600_000  # 2026-01-31T15:00:00Z


def test_month_bounds_follow_timezone():
    seoul_start, _ = month_bounds(Month(2026, 3), SEOUL)
    utc_start, _ = month_bounds(Month(2026, 3), "UTC")

    assert utc_start - seoul_start == 9 * 3600 * 1000


def test_month_parse_rejects_bad_text():
    assert Month.parse("2026-02") == Month(2026, 2)
    for text in ("2026-13", "2026-00", "202602", "26-02", "2026-2", ""):
        with pytest.raises(ValueError, match="month"):
            Month.parse(text)


def test_month_next_and_previous_cross_years():
    assert Month(2025, 12).next() == Month(2026, 1)
    assert Month(2026, 1).previous() == Month(2025, 12)


def test_session_across_midnight_splits_10_and_20_minutes():
    pieces = split_session(JAN_31_2350, 1800, 1800, 600, SEOUL)

    assert [piece.month for piece in pieces] == [Month(2026, 1), Month(2026, 2)]
    assert [piece.play_sec for piece in pieces] == [600, 1200]
    assert [piece.billable_sec for piece in pieces] == [600, 1200]
    assert [piece.amount for piece in pieces] == [100, 200]


def test_billable_stops_at_exhaustion_before_boundary():
    # Exhausted at 23:55, ended at 00:20: only the first 5 minutes are billable.
    pieces = split_session(JAN_31_2350, 1800, 300, 600, SEOUL)

    assert [piece.play_sec for piece in pieces] == [600, 1200]
    assert [piece.billable_sec for piece in pieces] == [300, 0]
    assert [piece.amount for piece in pieces] == [50, 0]


def test_amount_remainder_stays_with_session():
    # 7 s at 1000/h is 1.94 G-coin: 3 s + 4 s would round to 0 + 1 separately.
    pieces = split_session(JAN_31_2350 + 597_000, 7, 7, 1000, SEOUL)

    assert [piece.billable_sec for piece in pieces] == [3, 4]
    assert sum(piece.amount for piece in pieces) == charge_for(7, 1000)


def test_zero_second_session_counts_in_start_month():
    pieces = split_session(JAN_31_2350 + 599_900, 0, 0, 600, SEOUL)

    assert len(pieces) == 1
    assert pieces[0].month == Month(2026, 1)
    assert pieces[0].play_sec == 0


def test_split_rejects_billable_above_play():
    with pytest.raises(ValueError, match="billable_sec"):
        split_session(JAN_31_2350, 10, 11, 600, SEOUL)


MONTH_MS = 31 * 24 * 3600 * 1000
sessions = st.tuples(
    st.integers(min_value=1_700_000_000_000, max_value=1_800_000_000_000),
    st.integers(min_value=0, max_value=3 * MONTH_MS // 1000),
    st.integers(min_value=0, max_value=3 * MONTH_MS // 1000),
    st.integers(min_value=0, max_value=100_000),
    st.sampled_from([SEOUL, "UTC", "America/New_York"]),
)


@settings(max_examples=300, deadline=None)
@given(sessions)
def test_split_adds_up_to_session_totals(session):
    started_at, play, billable, rate, timezone = session
    billable = min(billable, play)

    pieces = split_session(started_at, play, billable, rate, timezone)

    assert sum(piece.play_sec for piece in pieces) == play
    assert sum(piece.billable_sec for piece in pieces) == billable
    assert sum(piece.amount for piece in pieces) == charge_for(billable, rate)
    assert len({piece.month for piece in pieces}) == len(pieces)
    assert all(piece.billable_sec <= piece.play_sec for piece in pieces)


# Sessions near a month boundary, short enough to check second by second.
near_boundary = st.tuples(
    st.sampled_from([Month(2025, 12), Month(2026, 1), Month(2026, 2)]),
    st.integers(min_value=-4_000_000, max_value=4_000_000),
    st.integers(min_value=0, max_value=9_000),
    st.integers(min_value=0, max_value=9_000),
)


@settings(max_examples=200, deadline=None)
@given(near_boundary)
def test_every_second_is_in_exactly_one_month(case):
    month, offset_ms, play, billable = case
    billable = min(billable, play)
    started_at = month_bounds(month, SEOUL)[0] + offset_ms

    pieces = split_session(started_at, play, billable, 3600, SEOUL)

    # Assign each second to the month its start falls in, one by one.
    expected_play = Counter(month_containing(started_at + 1000 * k, SEOUL) for k in range(play))
    expected_billable = Counter(
        month_containing(started_at + 1000 * k, SEOUL) for k in range(billable)
    )
    for piece in pieces:
        assert piece.play_sec == expected_play.get(piece.month, 0)
        assert piece.billable_sec == expected_billable.get(piece.month, 0)
        assert piece.amount == piece.billable_sec  # 3600 per hour is one per second
    assert set(expected_play) <= {piece.month for piece in pieces}


def test_tally_counts_users_once_per_line():
    tally: Tally[str] = Tally()
    piece = split_session(JAN_31_2350, 60, 60, 600, SEOUL)[0]

    for game_id, user in [("a", "1"), ("b", "1"), ("a", "1"), ("a", "2"), ("b", "3")]:
        tally.add(game_id, user, piece)
    lines = tally.finish()

    assert lines["a"].sessions == 3
    assert lines["a"].unique_users == 2
    assert lines["b"].unique_users == 2
    assert tally.unique_users == 3


@settings(max_examples=300, deadline=None)
@given(sessions)
def test_piece_in_month_matches_split(session):
    started_at, play, billable, rate, timezone = session
    billable = min(billable, play)
    pieces = {
        piece.month: piece for piece in split_session(started_at, play, billable, rate, timezone)
    }
    first = min(pieces)

    for month in [first.previous(), *pieces, max(pieces).next()]:
        assert piece_in_month(started_at, play, billable, rate, month, timezone) == pieces.get(
            month
        )
