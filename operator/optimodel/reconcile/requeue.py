"""How soon to reconcile again after a problem that may clear by itself (storage down, a Secret not
there yet, a report not readable yet). Pure layer: stdlib and `optimodel.backoff`.

The first retry comes after `OPTIMODEL_RETRY_SECONDS`, each next one twice as late, up to
`OPTIMODEL_RETRY_MAX_SECONDS`, each drawn with jitter. Why: an outage shared by many resources (one
S3 endpoint for 1,000 of them) must not bring them all back at once every 30 s for as long as it
lasts; one that lasts hours costs a few calls per resource per hour instead.
"""

from __future__ import annotations

from optimodel.backoff import Backoff

MAX_RETRY_SECONDS = 600.0


def requeue_delay(base_s: float, failures: int, rand: float, cap_s: float = MAX_RETRY_SECONDS) -> float:
    """Seconds before the next reconcile after `failures` failed ones in a row; `rand` in [0, 1)."""
    return Backoff(first_s=base_s, cap_s=max(cap_s, base_s)).delay(failures, rand)
