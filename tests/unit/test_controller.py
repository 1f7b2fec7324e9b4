"""Controller edges that need no cluster: settings from the environment, termination messages, Jobs."""

from __future__ import annotations

import pytest
from kubernetes import client

from optimodel.controller.kube import _termination, observe_autoscaler, observe_deployment, observe_job
from optimodel.controller.reconciler import status_patch
from optimodel.controller.settings import Settings
from optimodel.reconcile import AutoscalerObservation, OptimizedModelStatus
from optimodel.reconcile.status import ServingStatus


def test_settings_from_env() -> None:
    settings = Settings.from_env({
        "OPTIMODEL_IMAGE": "reg/optimodel:1", "OPTIMODEL_SERVE_IMAGE": "reg/serve:1",
        "OPTIMODEL_NAMESPACES": "ml, staging", "OPTIMODEL_RUN_AS_USER": "none", "OPTIMODEL_METRICS_PORT": "0",
    })
    assert settings.pods.job_image == "reg/optimodel:1" and settings.pods.serve_image == "reg/serve:1"
    assert settings.namespaces == ("ml", "staging")
    assert settings.pods.run_as_user is None and settings.metrics_port == 0


def test_bad_setting_names_the_variable() -> None:
    with pytest.raises(SystemExit, match="OPTIMODEL_RESYNC_SECONDS"):
        Settings.from_env({"OPTIMODEL_RESYNC_SECONDS": "soon"})


def test_termination_message_json_or_log_tail() -> None:
    assert _termination('{"error": "x", "reason": "InvalidInput"}') == {"error": "x", "reason": "InvalidInput"}
    assert _termination("loading\nTraceback...\nValueError: bad h5 file\n") == {"error": "ValueError: bad h5 file"}
    assert _termination("") is None


def test_a_job_is_observed_with_its_recipe_attempt_and_request() -> None:
    retry = client.V1Job(
        metadata=client.V1ObjectMeta(
            name="digits-1212121212-2",
            annotations={
                "optimodel.io/recipe-key": "12" * 32,
                "optimodel.io/attempt": "2",
                "optimodel.io/retry-requested-at": "1700000000",
            },
        ),
        status=client.V1JobStatus(
            failed=1,
            conditions=[client.V1JobCondition(type="Failed", status="True", reason="DeadlineExceeded")],
        ),
    )
    job = observe_job(retry)
    assert (job.recipe_key, job.attempt, job.retry_token) == ("12" * 32, 2, "1700000000")
    assert (job.finished, job.condition_reason, job.failed) == ("Failed", "DeadlineExceeded", 1)
    first = client.V1Job(
        metadata=client.V1ObjectMeta(name="digits-1212121212", annotations={"optimodel.io/attempt": "x"}),
        status=client.V1JobStatus(active=1),
    )
    assert (observe_job(first).attempt, observe_job(first).finished, observe_job(first).retry_token) == (1, None, None)


def _deployment(*managed: client.V1ManagedFieldsEntry) -> client.V1Deployment:
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="digits-serving", generation=2, managed_fields=list(managed)),
        spec=client.V1DeploymentSpec(
            replicas=3,
            selector=client.V1LabelSelector(),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta()),
        ),
        status=client.V1DeploymentStatus(observed_generation=2, replicas=3),
    )


def _entry(manager: str, operation: str, spec: dict[str, object]) -> client.V1ManagedFieldsEntry:
    return client.V1ManagedFieldsEntry(
        manager=manager, operation=operation, fields_type="FieldsV1", fields_v1={"f:spec": spec}
    )


def test_a_deployment_says_whether_the_operator_applied_its_replicas() -> None:
    template = {"f:template": {}}
    applied = _deployment(_entry("optimodel", "Apply", {"f:replicas": {}, **template}))
    assert observe_deployment(applied).owns_replicas and observe_deployment(applied).replicas == 3
    for others in (
        (_entry("optimodel", "Apply", template), _entry("kube-controller-manager", "Update", {"f:replicas": {}})),
        (_entry("optimodel-handover-to-hpa", "Apply", {"f:replicas": {}}),),
        (),
    ):
        assert not observe_deployment(_deployment(*others)).owns_replicas


def test_an_autoscaler_is_observed_with_its_controller_and_bounds() -> None:
    found = client.V2HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(
            name="digits-serving",
            uid="hpa-1",
            owner_references=[
                client.V1OwnerReference(api_version="v1", kind="Other", name="x", uid="not-the-controller"),
                client.V1OwnerReference(
                    api_version="optimodel.io/v1alpha1", kind="OptimizedModel", name="digits", uid="om-1",
                    controller=True,
                ),
            ],
        ),
        spec=client.V2HorizontalPodAutoscalerSpec(
            min_replicas=2,
            max_replicas=6,
            scale_target_ref=client.V2CrossVersionObjectReference(kind="Deployment", name="digits-serving"),
            metrics=[
                client.V2MetricSpec(
                    type="Resource",
                    resource=client.V2ResourceMetricSource(
                        name="cpu", target=client.V2MetricTarget(type="Utilization", average_utilization=65)
                    ),
                )
            ],
        ),
    )
    assert observe_autoscaler(found) == AutoscalerObservation(
        name="digits-serving", uid="hpa-1", controller_uid="om-1", min_replicas=2, max_replicas=6,
        target_cpu_utilization=65,
    )
    bare = client.V2HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="other", uid="hpa-2"),
        spec=client.V2HorizontalPodAutoscalerSpec(
            max_replicas=3, scale_target_ref=client.V2CrossVersionObjectReference(kind="Deployment", name="x")
        ),
    )
    assert observe_autoscaler(bare) == AutoscalerObservation(name="other", uid="hpa-2", max_replicas=3)


def test_status_is_written_so_that_fields_gone_are_deleted() -> None:
    """A merge patch keeps what it does not name: what went away is sent as null, at every depth."""
    serving = ServingStatus(deployment="digits-serving", service="digits-serving", replicas=2)
    patch = status_patch(OptimizedModelStatus(phase="Ready", serving=serving))
    assert patch["candidate"] is None and patch["lastHandledRetryAt"] is None
    assert patch["serving"]["autoscaler"] is None and patch["serving"]["replicas"] == 2
    assert OptimizedModelStatus.model_validate(patch) == OptimizedModelStatus(phase="Ready", serving=serving)


def test_a_namespace_runs_at_most_its_share_and_the_rest_wait_without_a_thread() -> None:
    """Two reconciles of a namespace hold threads; its third waits (no thread, no error) and runs as
    soon as a slot frees; another namespace gets a thread meanwhile."""
    import asyncio
    import threading

    from optimodel.controller.fairness import NamespaceQueue

    release = threading.Event()
    started: list[str] = []

    def work(tag: str) -> str:
        started.append(tag)
        if tag.startswith("slow"):
            release.wait(10)
        return tag

    async def scenario() -> None:
        queue = NamespaceQueue(workers=4, namespace_workers=2)
        slow = [asyncio.create_task(queue.run("slow", lambda i=i: work(f"slow-{i}"))) for i in range(3)]
        while len(started) < 2:
            await asyncio.sleep(0.01)
        assert await queue.run("fast", lambda: work("fast")) == "fast"
        await asyncio.sleep(0.2)
        assert sorted(started) == ["fast", "slow-0", "slow-1"]  # the third slow one waits its turn
        release.set()
        assert await asyncio.gather(*slow) == ["slow-0", "slow-1", "slow-2"]
        queue.shutdown()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_nudges_that_come_while_one_waits_are_one_reconcile() -> None:
    """A burst of Deployment events asks once; an event after the reconcile started asks again."""
    import asyncio
    import threading

    from optimodel.controller.fairness import NamespaceQueue
    from optimodel.controller.handlers import Operator

    release = threading.Event()
    reconciled: list[tuple[str, str]] = []

    class Reconciler:
        def reconcile(self, namespace: str, name: str) -> None:
            reconciled.append((namespace, name))

    async def scenario() -> None:
        operator = Operator(Settings.from_env({}))
        operator.reconciler = Reconciler()  # type: ignore[assignment]
        operator.queue = NamespaceQueue(workers=1, namespace_workers=1)
        busy = asyncio.create_task(operator.queue.run("ns", lambda: release.wait(10)))  # holds the slot
        await asyncio.sleep(0.1)
        for _ in range(5):
            operator.nudge("ns", "m")
        operator.nudge("ns", "other")
        release.set()
        await busy
        while len(reconciled) < 2:
            await asyncio.sleep(0.01)
        operator.nudge("ns", "m")
        while len(reconciled) < 3:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        operator.queue.shutdown()

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert reconciled == [("ns", "m"), ("ns", "other"), ("ns", "m")]


def test_the_work_sees_the_context_variables_of_its_caller() -> None:
    """kopf.event, called from a reconcile, reads kopf's settings from a context variable."""
    import asyncio
    import contextvars

    from optimodel.controller.fairness import NamespaceQueue

    setting: contextvars.ContextVar[str] = contextvars.ContextVar("setting")

    async def scenario() -> str:
        setting.set("from the handler")
        queue = NamespaceQueue(workers=1, namespace_workers=1)
        try:
            return await queue.run("ns", setting.get)
        finally:
            queue.shutdown()

    assert asyncio.run(scenario()) == "from the handler"


def test_a_cancelled_wait_gives_the_slot_back_only_when_its_thread_ends() -> None:
    import asyncio
    import threading

    from optimodel.controller.fairness import NamespaceQueue

    release, second = threading.Event(), threading.Event()

    async def scenario() -> None:
        queue = NamespaceQueue(workers=2, namespace_workers=1)
        first = asyncio.create_task(queue.run("ns", lambda: release.wait(10)))
        await asyncio.sleep(0.2)
        first.cancel()  # kopf gave up on the handler; its call still runs on the thread
        later = asyncio.create_task(queue.run("ns", second.set))
        await asyncio.sleep(0.3)
        assert not second.is_set(), "the namespace's one slot is still in use"
        release.set()
        await asyncio.wait_for(later, 5)
        assert second.is_set()
        queue.shutdown()

    asyncio.run(asyncio.wait_for(scenario(), 20))


class _RefusingKube:
    """An API with one OptimizedModel whose endpoint the policy refuses; records the status written."""

    def __init__(self, endpoint: str) -> None:
        self.status: dict[str, object] = {}
        self.body = {
            "metadata": {"name": "m", "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": {"source": {"uri": "s3://models/m.h5"}, "evaluation": {"data": "s3://data/t.npz"},
                     "artifacts": {"uri": "s3://artifacts/m/",
                                   "s3": {"endpoint": endpoint, "credentialsSecret": "s3"}}},
        }

    def get_model(self, namespace: str, name: str) -> dict[str, object]:
        return self.body

    def get_deployment(self, namespace: str, name: str) -> None:
        return None

    get_autoscaler = get_service = get_deployment

    def write_status(self, namespace: str, name: str, status: dict[str, object]) -> None:
        self.status = status

    def credentials(self, namespace: str, secret: str) -> tuple[str, str]:
        raise AssertionError("the Secret was read for a refused spec")


class _NoStore:
    def store(self, *_: object) -> None:
        raise AssertionError("a store was opened for a refused spec")


@pytest.mark.parametrize("endpoint", ["http://169.254.169.254", "http://minio.internal:9000"])
def test_a_refused_endpoint_stalls_before_any_request(endpoint: str) -> None:
    from optimodel.controller.metrics import Metrics
    from optimodel.controller.reconciler import Reconciler
    from optimodel.resources import PodDefaults

    kube = _RefusingKube(endpoint)
    events: list[object] = []
    reconciler = Reconciler(kube, _NoStore(), PodDefaults("j", "s"), Metrics(),  # type: ignore[arg-type]
                            lambda _, event: events.append(event))
    outcome = reconciler.reconcile("ns", "m")
    assert outcome is not None and outcome.retry_after is None
    stalled = {c["type"]: c for c in kube.status["conditions"]}["Stalled"]  # type: ignore[index]
    assert (stalled["status"], stalled["reason"]) == ("True", "EndpointNotAllowed")
    assert endpoint in stalled["message"] and events


def test_a_reconcile_that_finds_the_status_it_would_write_writes_nothing() -> None:
    """The full resync of a settled resource costs no status write: the second reconcile sees its own
    status (as the API server stores it, nulls dropped) and leaves it."""
    from optimodel.controller.metrics import Metrics
    from optimodel.controller.reconciler import Reconciler, without_nulls
    from optimodel.resources import PodDefaults

    class Writes(_RefusingKube):
        def __init__(self) -> None:
            super().__init__("http://169.254.169.254")
            self.writes = 0

        def write_status(self, namespace: str, name: str, status: dict[str, object]) -> None:
            self.writes += 1
            self.body["status"] = without_nulls(status)

    kube = Writes()
    reconciler = Reconciler(kube, _NoStore(), PodDefaults("j", "s"), Metrics(), lambda *_: None)  # type: ignore[arg-type]
    reconciler.reconcile("ns", "m")
    reconciler.reconcile("ns", "m")
    assert kube.writes == 1
    kube.body["spec"]["source"]["uri"] = "s3://models/other.h5"  # type: ignore[index]
    kube.body["metadata"]["generation"] = 2  # type: ignore[index]
    reconciler.reconcile("ns", "m")
    assert kube.writes == 2


def test_default_resources_from_env_reach_the_pods_the_operator_builds() -> None:
    settings = Settings.from_env({
        "OPTIMODEL_JOB_RESOURCES": '{"requests": {"cpu": 2, "memory": "4Gi"}, "limits": {"memory": "6Gi"}}',
        "OPTIMODEL_SERVE_RESOURCES": '{"limits": {"memory": "300Mi"}}',
    })
    assert settings.pods.job_resources == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "6Gi"}}
    assert settings.pods.serve_resources == {"limits": {"memory": "300Mi"}}
    assert Settings.from_env({}).pods.job_resources["limits"] == {"memory": "3Gi"}


@pytest.mark.parametrize("value", ['{"requests": {"cpu": "lots"}}', '{"request": {}}', "[1]", "{cpu: 1}",
                                   '{"limits": {"memory": true}}', '{"limits": "1Gi"}'])  # fmt: skip
def test_bad_default_resources_stop_the_operator_naming_the_variable(value: str) -> None:
    with pytest.raises(SystemExit, match="OPTIMODEL_JOB_RESOURCES"):
        Settings.from_env({"OPTIMODEL_JOB_RESOURCES": value})
