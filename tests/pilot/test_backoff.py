from __future__ import annotations

import pytest

from pilot.backoff import Backoff


def test_doubles_up_to_the_cap_then_stays() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, jitter=0.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff.attempts == 8


def test_reset_starts_again_from_initial() -> None:
    backoff = Backoff(initial=0.5, maximum=10.0, jitter=0.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 0.5


def test_jitter_stays_within_bounds_and_under_the_cap() -> None:
    backoff = Backoff(initial=1.0, maximum=4.0, jitter=0.2)
    delays = [backoff.next_delay() for _ in range(200)]
    assert 0.8 <= delays[0] <= 1.2
    assert all(d <= 4.0 for d in delays)
    assert min(delays[10:]) >= 4.0 * 0.8
    # Jitter actually spreads the values (pilots must not come back in lock step).
    assert len({round(d, 6) for d in delays[10:]}) > 10


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, jitter=0.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 30.0


@pytest.mark.parametrize(
    ("initial", "maximum", "factor", "jitter"),
    [(0.0, 1.0, 2.0, 0.1), (2.0, 1.0, 2.0, 0.1), (1.0, 2.0, 0.5, 0.1), (1.0, 2.0, 2.0, 1.0)],
)
def test_rejects_nonsense(initial: float, maximum: float, factor: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="back-off"):
        Backoff(initial=initial, maximum=maximum, factor=factor, jitter=jitter)
