"""Exponential backoff with jitter: how long to wait before attempt `n` of something that failed. Pure.

Stdlib only; used by the server (model download) and the operator (retryable reconcile problems).
Why jitter: a cause shared by many waiters (an S3 outage seen by 1,000 resources or 50 serving pods)
would otherwise bring them all back at the same instant, again and again. The caller draws the
random number, so the function stays deterministic and testable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first_s: float  # the wait before the second attempt
    cap_s: float  # no wait is longer than this
    factor: float = 2.0
    jitter: float = 0.5  # a wait is drawn from [(1 - jitter) * d, d]

    def delay(self, failures: int, rand: float) -> float:
        """The wait after `failures` consecutive failures (>= 1); `rand` is uniform in [0, 1)."""
        exponent = max(failures - 1, 0)
        # min() before the power would not help: a large exponent overflows the float first
        ceiling = self.cap_s if exponent > 64 else min(self.cap_s, self.first_s * self.factor**exponent)
        return ceiling * (1 - self.jitter * rand)
