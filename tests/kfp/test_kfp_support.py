"""What KFP v2 needs of the package: artifact names for the Vertex resolver, the in-cluster
check of the kubernetes canary backend, and the trainer reading object-store URIs."""

from __future__ import annotations

import json

import pytest

from tfx_serving_ext.canary.backends.base import BackendError, CanaryModels
from tfx_serving_ext.components.kfp_artifact_names import (
    hashed_artifact_id,
    runtime_artifact_names,
)


def test_runtime_names_are_rebuilt_from_the_entrypoint_arguments():
    """The ids match TFX's entrypoint's (its private _get_hashed_id) for the same names."""
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as utils

    name = "projects/p/locations/l/metadataStores/default/artifacts/42"
    table: dict = {}
    assert hashed_artifact_id(name) == utils._get_hashed_id(name, table)
    executor_input = {
        "inputs": {"artifacts": {"model": {"artifacts": [{"name": name, "uri": "/m"}]}}},
        "outputs": {"artifacts": {"blessing": {"artifacts": [{"uri": "/b"}]}}},
    }
    argv = ["x", "--json_serialized_invocation_args", json.dumps(executor_input), "--runner=X"]
    assert runtime_artifact_names(argv) == {hashed_artifact_id(name): name}
    assert (
        runtime_artifact_names(["x", f"--json_serialized_invocation_args={json.dumps({})}"]) == {}
    )
    assert runtime_artifact_names(["pytest"]) == {}


def test_validator_names_its_model_by_runtime_name_under_the_v2_entrypoint(tmp_path, monkeypatch):
    from tfx.types import standard_artifacts

    from tfx_serving_ext.components.signature_validator import executor

    name = "projects/p/locations/l/metadataStores/default/artifacts/7"
    executor_input = {"inputs": {"artifacts": {"model": {"artifacts": [{"name": name}]}}}}
    monkeypatch.setattr(
        "sys.argv", ["entrypoint", "--json_serialized_invocation_args", json.dumps(executor_input)]
    )
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    model.id = hashed_artifact_id(name)
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    executor.write_blessing(blessing, True, "{}", model=model)
    assert blessing.get_string_custom_property("current_model_id") == name

    monkeypatch.setattr("sys.argv", ["local_dag_runner"])
    model.id = 12
    executor.write_blessing(blessing, True, "{}", model=model)
    assert blessing.get_int_custom_property("current_model_id") == 12


def test_kubernetes_backend_off_cluster_fails_with_the_projects_error(tmp_path, monkeypatch):
    from tfx.proto import infra_validator_pb2

    from tfx_serving_ext.canary.backends.kubernetes import KubernetesBackend

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    spec = infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(tags=["2.19.1"]),
        kubernetes=infra_validator_pb2.KubernetesConfig(),
    )
    backend = KubernetesBackend(CanaryModels("m", tmp_path), spec, tmp_path)
    with pytest.raises(BackendError, match="only inside a Kubernetes pod.*embedded"):
        backend.start()


def test_inside_a_cluster_is_the_token_and_the_service_host_not_kfp_namespace(tmp_path):
    from tfx_serving_ext.canary.backends.kubernetes import (
        current_namespace,
        current_pod_name,
        is_inside_cluster,
    )

    (tmp_path / "token").write_text("t")
    (tmp_path / "namespace").write_text("kubeflow-user\n")
    # What an open-source KFP v2 executor pod has: no KFP_NAMESPACE.
    kfp_pod = {
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "KFP_POD_NAME": "penguin-abc-123",
        "KFP_POD_UID": "u",
        "NAMESPACE": "kubeflow",
    }
    assert is_inside_cluster(kfp_pod, tmp_path)
    assert current_pod_name(kfp_pod) == "penguin-abc-123"
    assert current_namespace(kfp_pod, tmp_path) == "kubeflow"
    assert current_namespace({"HOSTNAME": "h"}, tmp_path) == "kubeflow-user"
    assert not is_inside_cluster({}, tmp_path)
    assert not is_inside_cluster(kfp_pod, tmp_path / "no-token-here")


def test_trainer_reads_an_object_store_uri_through_its_mount(tmp_path, monkeypatch):
    """A gs:// Examples URI is read at the mount path, like in every other executor."""
    import tensorflow as tf

    from pipelines.penguin import model as penguin_model
    from pipelines.penguin.trainer import read_split
    from tfx_serving_ext.components import artifact_paths

    monkeypatch.setitem(artifact_paths.REMOTE_MOUNTS, "gs://", f"{tmp_path}/gcs/")
    split_dir = tmp_path / "gcs" / "bucket" / "root" / "CsvExampleGen" / "examples" / "Split-train"
    split_dir.mkdir(parents=True)
    example = tf.train.Example()
    for key in penguin_model.FEATURE_KEYS:
        example.features.feature[key].float_list.value.append(1.5)
    example.features.feature[penguin_model.LABEL_KEY].int64_list.value.append(2)
    with tf.io.TFRecordWriter(str(split_dir / "data.gz"), options="GZIP") as writer:
        writer.write(example.SerializeToString())
    features, labels = read_split("gs://bucket/root/CsvExampleGen/examples", "train")
    assert features.shape == (1, len(penguin_model.FEATURE_KEYS))
    assert labels.tolist() == [2]
