"""Exponential backoff with jitter, bounded in attempts and in total time."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Delay before retry n (n = 1, 2, ...) is initial * multiplier**(n-1), capped at `max_delay`, then
    scaled by a random factor in [1 - jitter, 1 + jitter]. With the defaults (multiplier 2, jitter 0.2)
    every delay is strictly longer than the one before until the cap: retries visibly back off, and
    workers that failed together do not retry in lockstep.
    """

    max_attempts: int = 5
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 60.0
    max_total: float = 300.0
    jitter: float = 0.2

    def delays(self, rng: Callable[[], float] = random.random) -> Iterator[float]:
        """The sleeps between attempts (max_attempts - 1 of them), stopping before `max_total` is spent."""
        spent = 0.0
        for n in range(1, self.max_attempts):
            base = min(self.max_delay, self.initial_delay * self.multiplier ** (n - 1))
            delay = base * (1 - self.jitter + 2 * self.jitter * rng())
            if spent + delay > self.max_total:
                return
            spent += delay
            yield delay
