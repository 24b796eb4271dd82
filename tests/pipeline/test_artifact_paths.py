"""Executors under KFP v2 / Vertex: object-store artifact URIs are read through KFP's mounts."""

from __future__ import annotations

import json
import shutil

import pytest
from tfx.types import standard_artifacts

from tfx_serving_ext.components import artifact_paths
from tfx_serving_ext.components.artifact_paths import RemoteUriError, local_path


@pytest.fixture()
def gcs_mount(tmp_path, monkeypatch):
    """A directory standing in for Vertex's Cloud Storage FUSE mount at /gcs."""
    mount = tmp_path / "gcs"
    mount.mkdir()
    monkeypatch.setitem(artifact_paths.REMOTE_MOUNTS, "gs://", f"{mount}/")
    return mount


def test_local_paths_are_unchanged():
    assert local_path("/pipeline_root/Trainer/model/3") == "/pipeline_root/Trainer/model/3"


def test_object_store_uris_map_to_their_mount(gcs_mount):
    assert local_path("gs://bucket/root/model/7") == f"{gcs_mount}/bucket/root/model/7"


def test_unmounted_object_store_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(artifact_paths.REMOTE_MOUNTS, "s3://", f"{tmp_path}/absent/")
    with pytest.raises(RemoteUriError, match="not mounted in this container"):
        local_path("s3://bucket/model")
    with pytest.raises(RemoteUriError, match="cannot read"):
        local_path("hdfs://cluster/model")


def test_validator_executor_reads_and_writes_gs_artifacts_through_the_mount(
    gcs_mount, penguin_model_dir
):
    from tfx_serving_ext.components.signature_validator import executor as validator

    shutil.copytree(penguin_model_dir, gcs_mount / "bucket" / "model" / "Format-Serving")
    model = standard_artifacts.Model()
    model.uri = "gs://bucket/model"
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = "gs://bucket/blessing"

    validator.Executor().Do(
        {validator.MODEL_KEY: [model]}, {validator.BLESSING_KEY: [blessing]}, {}
    )

    written = gcs_mount / "bucket" / "blessing"
    assert (written / "BLESSED").is_file()
    assert json.loads((written / "report.json").read_text())["blessed"] is True
    # MLMD keeps the object-store URI, not the container's mount path.
    assert blessing.get_string_custom_property("current_model") == "gs://bucket/model"
