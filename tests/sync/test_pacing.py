"""Chunk sizing, backoff with full jitter, and the daily byte budget."""

from __future__ import annotations

from sync.pacing import Backoff, ChunkSizer, DailyBudget


def test_chunk_size_follows_confirmed_throughput_within_bounds() -> None:
    sizer = ChunkSizer(minimum=4096, maximum=65536, target_seconds=0.5)
    assert sizer.size == 4096
    for i in range(10):  # 60 000 B/s confirmed: half a second is ~29 KiB
        sizer.confirmed(i * 0.1, 6000)
    assert 28 * 1024 <= sizer.size <= 30 * 1024
    assert sizer.size % 1024 == 0
    for i in range(10, 40):  # a fast link: capped at the maximum
        sizer.confirmed(i * 0.001, 1_000_000)
    assert sizer.size == 65536
    sizer.link_reset()
    assert sizer.rate(10.0) is None


def test_backoff_grows_exponentially_with_full_jitter_and_caps() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0)
    ceilings = [backoff.next_delay(1.0) for _ in range(8)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff.next_delay(0.0) == 0.0  # full jitter reaches down to zero
    backoff.reset()
    assert backoff.next_delay(0.5) == 0.5


def test_daily_budget_holds_blobs_and_rolls_over_at_midnight() -> None:
    budget = DailyBudget(limit=100_000)
    assert budget.allows(1, 60_000)
    budget.spend(1, 60_000)
    assert not budget.allows(1, 50_000)
    assert budget.remaining(1) == 40_000
    assert budget.allows(2, 50_000)  # a new UTC day
    assert DailyBudget(limit=0).allows(1, 10**12)  # 0 = unlimited


def test_chunk_shrinks_to_a_share_of_how_long_connections_last() -> None:
    sizer = ChunkSizer(minimum=4096, maximum=65536, target_seconds=4.0)
    assert sizer.chunk_seconds == 4.0  # no connection has ended yet: the target
    for lifetime in (4.0, 5.0, 4.8, 100.0, 4.4):  # cut every ~4.5 s; one long outlier
        sizer.connection_ended(lifetime)
    assert sizer.chunk_seconds == 4.8 / 16  # the median, not the mean, of what was seen
    for i in range(10):  # 60 000 B/s confirmed: 0.3 s of it is ~17.6 KiB
        sizer.confirmed(i * 0.1, 6000)
    assert 17 * 1024 <= sizer.size <= 18 * 1024


def test_a_stable_link_keeps_the_configured_target_and_old_lifetimes_age_out() -> None:
    sizer = ChunkSizer(minimum=4096, maximum=65536, target_seconds=0.5, lifetimes_kept=3)
    for lifetime in (1.0, 1.0, 1.0):
        sizer.connection_ended(lifetime)
    assert sizer.chunk_seconds == 1.0 / 16
    for lifetime in (600.0, 900.0, 1200.0):  # the link got better: only recent ones count
        sizer.connection_ended(lifetime)
    assert sizer.chunk_seconds == 0.5
    for i in range(10):
        sizer.confirmed(i * 0.1, 6000)
    assert 28 * 1024 <= sizer.size <= 30 * 1024
