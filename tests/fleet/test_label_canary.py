"""Label canary on the fleet: canary first, watched, then stable; on failure canary goes back."""

from __future__ import annotations

import pytest

from tests.fleet.conftest import MODEL, NOISY_MACHINE_THRESHOLDS, PinnedClients
from tfx_serving_ext.client.client import ServingClient
from tfx_serving_ext.protocol import model_config
from tfx_serving_ext.protocol.versions import list_versions
from tfx_serving_ext.publish.labels import label_version
from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume

STABLE_ON_1 = {"labels": {"stable": 1}}


def canary_push(fleet, **overrides) -> VolumePushConfig:
    settings = dict(
        base_directory=str(fleet.base),
        model_name=MODEL,
        model_config_file=str(fleet.config_file),
        fleet=fleet.grpc,
        canary_label="canary",
        stable_label="stable",
        verify_timeout_seconds=60,
        watch_seconds=1.5,
        watch_interval_seconds=0.2,
        watch_thresholds=NOISY_MACHINE_THRESHOLDS,
    )
    settings.update(overrides)
    return VolumePushConfig(**settings)


def routed(addresses: list[str], label: str) -> list[int | None]:
    """Returns the version each replica answers for `label`."""
    versions = []
    for address in addresses:
        with ServingClient(address) as client:
            versions.append(label_version(client, MODEL, label))
    return versions


@pytest.mark.parametrize("fleet", [STABLE_ON_1], indirect=True)
def test_canary_label_first_then_stable_moves_once_watched(fleet, fleet_models):
    during_watch = []

    def look(report) -> None:
        if not during_watch:
            during_watch.append((routed(fleet.grpc, "canary"), routed(fleet.grpc, "stable")))

    with PinnedClients(fleet.grpc, label="stable") as pinned:
        result = push_to_volume(fleet_models.good, canary_push(fleet), on_watch=look)
    assert result.pushed and result.watch["verdict"] == "passed"
    # While watched, clients asking for `canary` got version 2, those on `stable` version 1.
    assert during_watch == [([2, 2, 2], [1, 1, 1])]
    assert result.labels == {"canary": 2, "stable": 2}
    assert model_config.read_version_labels(fleet.config_file, MODEL) == result.labels
    assert routed(fleet.grpc, "stable") == [2, 2, 2]
    assert pinned.failures == []
    assert {v for _, v, _ in pinned.answers} == {1, 2}


@pytest.mark.parametrize("fleet", [STABLE_ON_1], indirect=True)
def test_failed_canary_goes_back_to_stable_and_the_version_is_removed(fleet, fleet_models):
    with PinnedClients(fleet.grpc, label="stable") as pinned:
        result = push_to_volume(
            fleet_models.errors_on_traffic, canary_push(fleet, watch_seconds=20)
        )
    assert (result.pushed, result.rolled_back) == (False, True)
    assert result.watch["verdict"] == "failed"
    assert result.labels == {"canary": 1, "stable": 1}
    assert model_config.read_version_labels(fleet.config_file, MODEL) == result.labels
    assert routed(fleet.grpc, "canary") == [1, 1, 1]
    assert sorted(list_versions(fleet.base)) == [1]
    assert pinned.failures == []
    assert {v for _, v, _ in pinned.answers} == {1}


def test_label_canary_needs_both_labels_and_a_config_file(tmp_path):
    from tfx_serving_ext.publish.push_config import PushConfigError

    with pytest.raises(PushConfigError, match="both canary_label and stable_label"):
        VolumePushConfig(str(tmp_path), canary_label="canary", server_address="x:1")
    with pytest.raises(PushConfigError, match="needs model_config_file"):
        VolumePushConfig(str(tmp_path), canary_label="canary", stable_label="stable", fleet=["x:1"])


def test_version_labels_move_once_every_replica_serves_the_version(fleet, fleet_models):
    config = VolumePushConfig(
        base_directory=str(fleet.base),
        model_name=MODEL,
        model_config_file=str(fleet.config_file),
        fleet=fleet.grpc,
        version_labels={"canary": "new", "stable": "previous"},
        keep_versions=1,
        verify_timeout_seconds=60,
    )
    result = push_to_volume(fleet_models.good, config)
    assert result.pushed and result.labels == {"canary": 2, "stable": 1}
    assert routed(fleet.grpc, "canary") == [2, 2, 2]
    assert routed(fleet.grpc, "stable") == [1, 1, 1]
    # Retention keeps 1 version, but version 1 is labelled and still served: it stays.
    assert result.removed_versions == [] and sorted(list_versions(fleet.base)) == [1, 2]
