"""The worker's Faust app takes its producer configuration from Settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.assignor.client_assignment import CopartitionedAssignment
from faust.assignor.copartitioned_assignor import CopartitionedAssignor

from pawstream import faust_transport
from pawstream.settings import KafkaSettings, Settings, WorkerSettings
from stream.worker.faust_app import create_app


def _app_settings(tmp_path: Path, *, idempotent: bool) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1", idempotent_producer=idempotent),
        worker=WorkerSettings(data_dir=tmp_path / "faust"),
    )


@pytest.mark.parametrize("idempotent", [True, False])
async def test_idempotent_producer_setting_reaches_faust(tmp_path: Path, idempotent: bool) -> None:
    app = create_app(_app_settings(tmp_path, idempotent=idempotent))
    producer = app.producer
    assert isinstance(producer, faust_transport.Producer)
    assert producer._settings_extra()["enable_idempotence"] is idempotent
    # The aiokafka producer Faust would start (built, not started: no broker needed).
    client = producer._new_producer()
    try:
        assert (client._txn_manager is not None) is idempotent
    finally:
        await client.stop()
    assert app.conf.producer_acks == -1  # idempotence needs acks=all


def _assign(
    existing: dict[str, set[int]], newcomers: list[str], partitions: int, replicas: int
) -> dict[str, set[int]]:
    """Faust's own sticky assignor for one topic, as the group leader runs it (no broker needed)."""
    clients = {
        name: CopartitionedAssignment(actives=set(held), topics={"images"}) for name, held in existing.items()
    }
    clients.update({name: CopartitionedAssignment(topics={"images"}) for name in newcomers})
    assignor = CopartitionedAssignor(
        topics={"images"}, cluster_asgn=clients, num_partitions=partitions, replicas=replicas
    )
    return {name: set(a.actives) for name, a in assignor.get_assignment().items()}


@pytest.mark.parametrize(("partitions", "existing"), [(6, 3), (6, 4), (6, 5), (4, 2), (4, 3)])
def test_a_newcomer_worker_gets_partitions(tmp_path: Path, partitions: int, existing: int) -> None:
    # A member joining a group whose members hold every partition (a KEDA scale-up, a rolling
    # update's surge) must get some: /readyz needs one, and an idle newcomer adds nothing.
    app = create_app(_app_settings(tmp_path, idempotent=True))
    replicas = app.assignor.replicas
    assert replicas == app.conf.table_standby_replicas == 0
    members = [f"w{i}" for i in range(existing)]
    held = {m: set(range(partitions)[i::existing]) for i, m in enumerate(members)}
    got = _assign(held, ["new"], partitions, replicas)
    assert all(got.values()), got
    assert sorted(p for ps in got.values() for p in ps) == list(range(partitions))
    # The default (1 standby) leaves the newcomer idle in the same case: what this guards against.
    if partitions % existing == 0:
        assert _assign(held, ["new"], partitions, 1)["new"] == set()
