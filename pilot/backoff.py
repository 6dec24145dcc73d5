"""Capped exponential back-off with jitter, for retries and for polling an empty matcher."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays initial, initial*factor, ... up to `maximum`; `reset()` after a success.

    Jitter spreads thousands of pilots that lost central at the same moment, so they do not
    come back in lock step.
    """

    initial: float = 1.0
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1
    _attempt: int = field(default=0, init=False)
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError(
                f"back-off needs 0 < initial <= maximum (got {self.initial}, {self.maximum})"
            )
        if self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(
                f"back-off needs factor >= 1, 0 <= jitter < 1 ({self.factor}, {self.jitter})"
            )

    @property
    def attempts(self) -> int:
        return self._attempt

    def peek(self) -> float:
        """The next delay without jitter."""
        # min() before the power would overflow floats after ~1000 attempts.
        exponent = min(self._attempt, 64)
        return float(min(self.maximum, self.initial * self.factor**exponent))

    def next_delay(self) -> float:
        base = self.peek()
        self._attempt += 1
        if self.jitter:
            base *= 1 + self._rng.uniform(-self.jitter, self.jitter)
        return min(self.maximum, base)

    def reset(self) -> None:
        self._attempt = 0
