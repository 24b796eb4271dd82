"""A push to a volume shared by three replicas counts only once every replica serves it."""

from __future__ import annotations

import socket

import pytest

from tests.fleet.conftest import MODEL, PinnedClients, newest_available
from tfx_serving_ext.protocol.versions import list_versions
from tfx_serving_ext.publish.fleet import FleetError, resolve_fleet
from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume


def fleet_config(fleet, addresses, **overrides) -> VolumePushConfig:
    settings = dict(
        base_directory=str(fleet.base),
        model_name=MODEL,
        fleet=addresses,
        verify_timeout_seconds=60,
    )
    settings.update(overrides)
    return VolumePushConfig(**settings)


def test_good_push_is_verified_on_every_replica(fleet, fleet_models):
    seen = []
    with PinnedClients(fleet.grpc, version=1) as pinned:
        result = push_to_volume(
            fleet_models.good, fleet_config(fleet, fleet.grpc), on_replica=seen.append
        )
    assert (result.pushed, result.version, result.verification) == (True, 2, "available")
    assert [(r["address"], r["state"]) for r in result.replicas] == [
        (address, "AVAILABLE") for address in fleet.grpc
    ]
    assert "AVAILABLE on all 3 replicas" in result.message
    assert [newest_available(a) for a in fleet.grpc] == [2, 2, 2]
    assert {s.address for s in seen if s.state == "AVAILABLE"} == set(fleet.grpc)
    assert pinned.failures == []
    assert {address for address, _, _ in pinned.answers} == set(fleet.grpc)


def test_replica_that_cannot_load_fails_the_push_and_the_fleet_goes_back(fleet, fleet_models):
    strict = fleet.grpc[2]
    with PinnedClients(fleet.grpc, version=1) as pinned:
        result = push_to_volume(
            fleet_models.faulty_on_strict_replica, fleet_config(fleet, fleet.grpc)
        )
        # Pinned clients keep being answered by version 1 through the rollback.
        answered_after = len(pinned.answers)
    assert (result.pushed, result.verification, result.rolled_back) == (False, "load_failed", True)
    assert f"{strict}: END" in result.message
    assert "method_name" in result.message  # the replica's own load error
    assert "every replica serves version 1 again" in result.message
    assert [r["state"] for r in result.replicas] == ["ROLLED_BACK"] * 3
    assert sorted(list_versions(fleet.base)) == [1]
    assert [newest_available(a) for a in fleet.grpc] == [1, 1, 1]
    assert pinned.failures == []
    assert answered_after > 0 and {v for _, v, _ in pinned.answers} == {1}


def test_a_replica_that_does_not_answer_means_nothing_is_published(fleet, fleet_models):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{closed.getsockname()[1]}"
    result = push_to_volume(fleet_models.good, fleet_config(fleet, [*fleet.grpc, dead]))
    assert (result.pushed, result.version, result.verification) == (False, None, "unreachable")
    assert dead in result.message and "nothing published" in result.message
    assert [r["address"] for r in result.replicas] == [dead]
    assert sorted(list_versions(fleet.base)) == [1]


def test_dns_name_expands_to_one_replica_per_record():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        port = listening.getsockname()[1]
        addresses = resolve_fleet([f"dns:///localhost:{port}", "10.0.0.9:8500"])
    assert f"127.0.0.1:{port}" in addresses
    assert addresses[-1] == "10.0.0.9:8500"
    assert all(a.endswith(f":{port}") for a in addresses[:-1])

    def no_records(host, port, type):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(FleetError, match="tf-serving-headless does not resolve"):
        resolve_fleet(["dns:///tf-serving-headless:8500"], resolver=no_records)
    with pytest.raises(FleetError, match="dns:///name:port"):
        resolve_fleet(["dns:///tf-serving-headless"])
