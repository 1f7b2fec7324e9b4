"""deletionPolicy Delete, the pure part: what a deleted resource claims, what it may remove, what it
must keep for others; and the history of used results that status keeps for it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from optimodel.reconcile import compute_outcome
from optimodel.reconcile import reasons as r
from optimodel.reconcile.deletion import Claims, OtherModel, deletion_events, plan_deletion, retry_delay
from optimodel.reconcile.status import MAX_USED_RESULTS, UsedResult
from optimodel.storage import LocalStore
from tests.unit.test_reconcile import RECIPE, T0, T1, deployment, observed, report

URI = "s3://artifacts/digits/"
R1, R2, K1, K2, K3 = "a1" * 32, "a2" * 32, "b1" * 32, "b2" * 32, "b3" * 32


def status(
    recipe: str | None = None,
    candidate: str | None = None,
    serving: str | None = None,
    results: tuple[tuple[str, str], ...] = (),
) -> dict[str, object]:
    return {
        "recipeKey": recipe,
        "candidate": {"key": candidate} if candidate else None,
        "serving": {"key": serving} if serving else None,
        "results": [{"artifactsUri": URI, "recipeKey": r, "key": k} for r, k in results],
    }


def other(ref: str, claims: Claims, uri: str = URI, deleting: bool = False, policy: str = "Retain") -> OtherModel:
    return OtherModel(ref=ref, artifacts_uri=uri, claims=claims, deleting=deleting, deletion_policy=policy)


def test_claims_are_the_recipe_the_candidate_the_served_model_and_the_history() -> None:
    claims = Claims.from_status(status(R2, candidate=K2, serving=K1, results=((R1, K1), (R2, K2))), URI)
    assert claims == Claims(frozenset({R1, R2}), frozenset({K1, K2}))
    assert Claims.from_status(None, URI) == Claims()
    assert Claims.from_status({"candidate": "garbage", "results": [3]}, URI) == Claims()


def test_earlier_results_count_only_under_the_prefix_they_were_stored_under() -> None:
    moved = {
        **status(R2, candidate=K2),
        "results": [
            {"artifactsUri": "s3://old/prefix/", "recipeKey": R1, "key": K1},
            {"artifactsUri": URI, "recipeKey": R2, "key": K2},
        ],
    }
    assert Claims.from_status(moved, URI) == Claims(frozenset({R2}), frozenset({K2}))
    assert Claims.from_status(moved, "s3://old/prefix").keys == {K1, K2}


def test_only_keys_are_claimed_so_nothing_outside_the_results_can_be_named() -> None:
    hostile = status("../../models", candidate="", serving="*", results=(("x/y", "ABC" * 30),))
    assert Claims.from_status(hostile, URI) == Claims()


def test_a_resource_alone_removes_every_pointer_and_result_it_used() -> None:
    own = Claims.from_status(status(R2, candidate=K2, serving=K2, results=((R1, K1), (R2, K2))), URI)
    plan = plan_deletion(URI, own, [])
    assert (plan.recipe_keys, plan.keys, plan.kept) == ((R1, R2), (K1, K2), ())
    assert [(e.type, e.reason, e.message) for e in deletion_events(URI, plan)] == [
        (
            "Normal",
            r.ARTIFACTS_DELETED,
            f"deleted 2 stored result(s) ({K1[:12]}, {K2[:12]}) and 2 recipe pointer(s) under {URI}",
        )
    ]


def test_what_another_resource_uses_is_kept_and_named() -> None:
    own = Claims.from_status(status(R2, candidate=K2, results=((R1, K1), (R2, K2))), URI)
    cache_hit = other("staging/digits", Claims.from_status(status(R2, candidate=K2, serving=K2), URI))
    plan = plan_deletion(URI, own, [cache_hit])
    assert (plan.recipe_keys, plan.keys) == ((R1,), (K1,))
    assert [(k.what, k.key, k.users) for k in plan.kept] == [
        ("recipe pointer", R2, ("staging/digits",)),
        ("result", K2, ("staging/digits",)),
    ]
    assert [(e.reason, e.message) for e in deletion_events(URI, plan)] == [
        (r.ARTIFACTS_DELETED, f"deleted 1 stored result(s) ({K1[:12]}) and 1 recipe pointer(s) under {URI}"),
        (
            r.ARTIFACTS_SHARED,
            f"kept what other OptimizedModels still use: recipe pointer {R2[:12]} (used by staging/digits); "
            f"result {K2[:12]} (used by staging/digits)",
        ),
    ]
    everything_shared = plan_deletion(URI, Claims.from_status(status(R2, candidate=K2), URI), [cache_hit])
    assert [e.reason for e in deletion_events(URI, everything_shared)] == [r.ARTIFACTS_SHARED]
    assert [e.reason for e in deletion_events(URI, plan_deletion(URI, Claims(), []))] == [r.ARTIFACTS_DELETED]


def test_the_same_key_under_another_prefix_is_not_shared() -> None:
    own = Claims.from_status(status(R1, candidate=K1), URI)
    elsewhere = other("b/x", Claims.from_status(status(R1, candidate=K1), URI), uri="s3://artifacts/other/")
    same_without_slash = other("c/y", Claims.from_status(status(candidate=K1), URI), uri="s3://artifacts/digits")
    assert plan_deletion(URI, own, [elsewhere]).keys == (K1,)
    assert [k.key for k in plan_deletion(URI, own, [same_without_slash]).kept] == [K1]


def test_others_being_deleted_hold_only_when_they_retain() -> None:
    own = Claims.from_status(status(R1, candidate=K1), URI)
    shared = Claims.from_status(status(R1, candidate=K1), URI)
    deleting_too = other("b/x", shared, deleting=True, policy="Delete")
    assert plan_deletion(URI, own, [deleting_too]).keys == (K1,)  # each removes; the last one wins
    retaining = other("b/x", shared, deleting=True, policy="Retain")
    assert plan_deletion(URI, own, [retaining]).keys == ()
    alive_with_delete = other("b/x", shared, policy="Delete")
    assert plan_deletion(URI, own, [alive_with_delete]).keys == ()


def test_recipe_pointers_add_results_status_has_not_recorded_yet() -> None:
    # The Job finished after the last status was written: its result is found through the pointer.
    own = Claims.from_status(status(R1), URI)
    assert plan_deletion(URI, own, [], pointers={R1: K1}).keys == (K1,)
    # Another resource with the same recipe holds the result its pointer names, recorded or not.
    waiting = other("b/x", Claims.from_status(status(R1), URI))
    plan = plan_deletion(URI, own, [waiting], pointers={R1: K1})
    assert plan.recipe_keys == () and plan.keys == () and {k.key for k in plan.kept} == {R1, K1}


def test_retry_delay_doubles_up_to_a_cap() -> None:
    assert [retry_delay(30, attempt) for attempt in range(7)] == [30, 60, 120, 240, 480, 600, 600]
    assert retry_delay(5, 10_000) == 600


def test_status_keeps_every_result_used_oldest_first() -> None:
    first = compute_outcome(observed(result=report("aa"), report_uri="s3://r", deployment=deployment("aa")), T0)
    assert first.status.results == [UsedResult(artifacts_uri=URI, recipe_key=RECIPE, key="aa" * 32)]
    again = compute_outcome(
        observed(result=report("aa"), report_uri="s3://r", deployment=deployment("aa"), previous=first.status), T1
    )
    assert again.status.results == first.status.results  # a resync adds nothing
    new_recipe = "34" * 32
    second = compute_outcome(
        observed(recipe_key=new_recipe, result=report("cc"), report_uri="s3://r", previous=first.status), T1
    )
    assert {u.artifacts_uri for u in second.status.results} == {URI}
    assert [(u.recipe_key, u.key) for u in second.status.results] == [(RECIPE, "aa" * 32), (new_recipe, "cc" * 32)]
    running = compute_outcome(replace(observed(previous=second.status), recipe_key="56" * 32), T1)
    assert running.status.results == second.status.results  # no result yet: the pointer is the recipeKey


def test_status_history_is_bounded() -> None:
    many = [UsedResult(artifacts_uri=URI, recipe_key=f"{i:064x}", key=f"{i:064x}") for i in range(MAX_USED_RESULTS)]
    previous = compute_outcome(observed(), T0).status.model_copy(update={"results": many})
    outcome = compute_outcome(observed(result=report("aa"), report_uri="s3://r", previous=previous), T1)
    assert len(outcome.status.results) == MAX_USED_RESULTS
    assert outcome.status.results[-1].key == "aa" * 32 and outcome.status.results[0] == many[1]


def test_local_store_deletes_one_object_and_tolerates_absence(tmp_path: Path) -> None:
    store = LocalStore()
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "a.json").write_text("{}")
    (tmp_path / "recipes" / "b.json").write_text("{}")
    store.delete(f"file://{tmp_path}/recipes/a.json")
    store.delete(f"file://{tmp_path}/recipes/missing.json")
    assert sorted(p.name for p in (tmp_path / "recipes").iterdir()) == ["b.json"]
