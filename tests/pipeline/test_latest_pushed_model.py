"""LatestPushedModelStrategy against a real (in-memory) MLMD store with real lineage events."""

from __future__ import annotations

import ml_metadata as mlmd
import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils, standard_artifacts

from tfx_serving_ext.components.latest_pushed_model import LatestPushedModelStrategy


@pytest.fixture()
def store() -> mlmd.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.fake_database.SetInParent()
    return mlmd.MetadataStore(config)


def _put(store, artifact):
    type_id = store.put_artifact_type(artifact.artifact_type)
    artifact.type_id = type_id
    [artifact_id] = store.put_artifacts([artifact.mlmd_artifact])
    artifact.id = artifact_id
    return artifact


def _push(store, model, pushed: int):
    """Records a pusher execution that consumed `model` and output a PushedModel."""
    pushed_model = standard_artifacts.PushedModel()
    pushed_model.uri = f"/pushed/{model.id}"
    pushed_model.set_int_custom_property("pushed", pushed)
    _put(store, pushed_model)
    execution_type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Pusher"))
    [execution_id] = store.put_executions([metadata_store_pb2.Execution(type_id=execution_type_id)])
    store.put_events(
        [
            metadata_store_pb2.Event(
                artifact_id=model.id, execution_id=execution_id, type=metadata_store_pb2.Event.INPUT
            ),
            metadata_store_pb2.Event(
                artifact_id=pushed_model.id,
                execution_id=execution_id,
                type=metadata_store_pb2.Event.OUTPUT,
            ),
        ]
    )
    return pushed_model


def _model(store, name: str):
    model = standard_artifacts.Model()
    model.uri = f"/models/{name}"
    return _put(store, model)


def _resolve(store, models, pushed_models):
    return LatestPushedModelStrategy().resolve_artifacts(
        store, {"model": list(models), "pushed_model": list(pushed_models)}
    )


def test_first_run_has_no_baseline(store):
    first = _model(store, "first")
    assert _resolve(store, [first], []) == {"model": [], "pushed_model": []}


def test_the_latest_successful_push_wins_over_newer_refused_ones(store):
    served, refused, never_pushed = (_model(store, n) for n in ("served", "refused", "new"))
    push_served = _push(store, served, pushed=1)
    push_refused = _push(store, refused, pushed=0)

    result = _resolve(store, [served, refused, never_pushed], [push_served, push_refused])

    assert artifact_utils.get_single_uri(result["model"]) == "/models/served"
    assert result["pushed_model"][0].id == push_served.id


def test_newer_successful_push_replaces_the_baseline(store):
    old, new = _model(store, "old"), _model(store, "new")
    pushes = [_push(store, old, pushed=1), _push(store, new, pushed=1)]
    result = _resolve(store, [old, new], pushes)
    assert artifact_utils.get_single_uri(result["model"]) == "/models/new"


def test_wrong_inputs_are_named(store):
    with pytest.raises(ValueError, match="model=Channel"):
        LatestPushedModelStrategy().resolve_artifacts(store, {"examples": []})
