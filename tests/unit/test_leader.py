"""Leader election's decision, on a clock of the test's own: when a candidate may take the Lease.

The rules are client-go's: a Lease held by another is taken only after it stayed unchanged for its
duration *as this candidate saw it*; a holder's renewal (a new resourceVersion) restarts that wait.
The cluster test (tests/cluster/test_operator_leader.py) runs two real operators on one Lease.
"""

from __future__ import annotations

from optimodel.controller.leader import Candidate, LeaseRecord
from optimodel.controller.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(holder: str | None, version: str, duration: int = 15) -> LeaseRecord:
    return LeaseRecord(holder=holder, duration_seconds=duration, version=version, transitions=0, acquire_time=None)


def test_a_missing_or_released_lease_is_taken_at_once() -> None:
    candidate = Candidate("b", Clock())
    assert candidate.may_take(None)
    assert candidate.may_take(record(None, "7"))


def test_a_lease_held_by_another_is_taken_only_after_it_stayed_unchanged_for_its_duration() -> None:
    clock = Clock()
    candidate = Candidate("b", clock)
    assert not candidate.may_take(record("a", "1"))
    clock.now += 14.9
    assert not candidate.may_take(record("a", "1"))
    clock.now += 0.1
    assert candidate.may_take(record("a", "1"))


def test_a_renewal_restarts_the_wait_whatever_the_clocks_say() -> None:
    clock = Clock()
    candidate = Candidate("b", clock)
    assert not candidate.may_take(record("a", "1"))
    clock.now += 14
    assert not candidate.may_take(record("a", "2"))  # the holder renewed: alive 0 s ago, not 14
    clock.now += 14
    assert not candidate.may_take(record("a", "2"))
    clock.now += 1
    assert candidate.may_take(record("a", "2"))


def test_the_holder_keeps_its_own_lease() -> None:
    candidate = Candidate("a", Clock())
    assert candidate.may_take(record("a", "1"))


def test_leader_election_is_off_unless_a_lease_namespace_is_set() -> None:
    assert Settings.from_env({}).lease_namespace is None
    settings = Settings.from_env({"OPTIMODEL_LEASE_NAMESPACE": "optimodel-system"})
    assert (settings.lease_namespace, settings.lease_name) == ("optimodel-system", "optimodel-operator")
