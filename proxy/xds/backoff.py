"""Capped exponential back-off with full jitter (as Envoy's JitteredExponentialBackOffStrategy).

`delay(attempt)` for attempt 0, 1, 2, ... is uniform in [0, min(cap, base * 2**attempt)]:
never negative, never above `cap`, and the ceiling grows until it reaches `cap`.
`held(attempt)` is uniform in [ceiling/2, ceiling] (equal jitter): for holding back a
repeated answer, where a draw near zero would let the repeats run at full speed.
Frozen and validated where it is made; the random source can be given, so a test
can make the draws fixed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 0.5           # seconds: the ceiling of the first delay
    cap: float = 30.0           # seconds: no delay is longer
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.cap >= self.base):
            raise ValueError(f"back-off needs 0 < base <= cap, got base={self.base} cap={self.cap}")

    def ceiling(self, attempt: int) -> float:
        # 2**attempt overflows float for large attempts: stop doubling once at the cap
        if attempt >= 64:
            return self.cap
        return min(self.cap, self.base * (1 << max(0, attempt)))

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, self.ceiling(attempt))

    def held(self, attempt: int) -> float:
        c = self.ceiling(attempt)
        return self.rng.uniform(c / 2, c)
