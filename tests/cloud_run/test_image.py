"""The model image, built without a Docker daemon and pushed to a real registry on loopback.

The registry is Debian's docker-registry (see conftest). A small synthetic base image stands in
for tensorflow/serving (no registry with the real one is reachable here); everything else — the
layer, the config, the manifest, the uploads — is the code path a pipeline runs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest
import requests

from tests.cloud_run.conftest import push_base_image
from tfx_serving_ext.cloud_run import registry as reg
from tfx_serving_ext.cloud_run.errors import RegistryError
from tfx_serving_ext.cloud_run.image_push import build_and_push_image

ACCEPT = ", ".join((*reg.IMAGE_MANIFESTS, *reg.INDEX_MANIFESTS))


def _get(registry, path: str, **headers) -> requests.Response:
    r = requests.get(f"{registry.url}/v2/{path}", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r


def _layer_members(blob: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return {m.name: m for m in tar.getmembers()}


@pytest.mark.parametrize(
    "oci,multi_arch",
    [(False, False), (True, True), (False, True)],
    ids=["docker", "oci-index", "docker-list"],
)
def test_model_image_pushed_and_pulled_back(
    local_registry, tiny_saved_model, oci, multi_arch, caplog
):
    caplog.set_level("INFO", logger="tfx_serving_ext.cloud_run")
    name = f"{'oci' if oci else 'docker'}{'-multi' if multi_arch else ''}"
    base = push_base_image(local_registry, f"base/{name}", "2.19", oci=oci, multi_arch=multi_arch)

    pushed = build_and_push_image(
        tiny_saved_model,
        target=f"{local_registry.host}/models/{name}",
        model_name="affine",
        model_version=7,
        base_image=base.reference,
        source_uri="gs://pipeline/Trainer/model/42",
    )

    # Same registry: the base layer is mounted across repositories, not uploaded again.
    assert f"Mounted base layer {base.layer_digest[:19]}" in caplog.text
    assert pushed.reference == f"{local_registry.host}/models/{name}@{pushed.digest}"
    assert pushed.tagged_reference == f"{local_registry.host}/models/{name}:v7"
    # The tag resolves to the digest we were given, with the base's manifest format.
    manifest_response = _get(local_registry, f"models/{name}/manifests/v7", Accept=ACCEPT)
    assert "sha256:" + hashlib.sha256(manifest_response.content).hexdigest() == pushed.digest
    manifest = manifest_response.json()
    assert manifest["mediaType"] == (reg.OCI_MANIFEST if oci else reg.DOCKER_MANIFEST)
    layers = manifest["layers"]
    assert [layer["digest"] for layer in layers[:-1]] == [base.layer_digest]  # amd64, not arm64
    assert layers[-1]["mediaType"] == (reg.OCI_LAYER_GZIP if oci else reg.DOCKER_LAYER_GZIP)

    config = _get(local_registry, f"models/{name}/blobs/{manifest['config']['digest']}").json()
    model_blob = _get(local_registry, f"models/{name}/blobs/{layers[-1]['digest']}").content
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(model_blob)).hexdigest()
    assert config["rootfs"]["diff_ids"] == [*base.config["rootfs"]["diff_ids"], diff_id]
    container = config["config"]
    assert "MODEL_NAME=affine" in container["Env"]
    assert "MODEL_NAME=model" not in container["Env"]
    assert "PATH=/usr/local/bin:/usr/bin:/bin" in container["Env"]
    assert container["Entrypoint"] == ["/usr/local/bin/tfx-serving-ext-entrypoint.sh"]
    assert container["ExposedPorts"] == {"8080/tcp": {}}
    labels = container["Labels"]
    assert labels["dev.tfx-serving-ext.model-source"] == "gs://pipeline/Trainer/model/42"
    assert labels["dev.tfx-serving-ext.model-version"] == "7"
    assert labels["base.label"] == "kept"
    assert config["os"] == "linux" and config["architecture"] == "amd64"

    members = _layer_members(model_blob)
    saved_model_pb = members["models/affine/7/saved_model.pb"]
    assert saved_model_pb.size == (tiny_saved_model / "saved_model.pb").stat().st_size
    assert "models/affine/7/variables/variables.index" in members
    entrypoint = members["usr/local/bin/tfx-serving-ext-entrypoint.sh"]
    assert entrypoint.mode == 0o755
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, 315532800)}
    assert list(members) == sorted(members)


def test_rebuild_of_same_model_gives_same_digest(local_registry, tiny_saved_model, tmp_path):
    base = push_base_image(local_registry, "base/repro", "1")
    # A copy of the model with different mtimes and a different path must not change the image.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_saved_model, copy)
    (copy / "saved_model.pb").touch()
    kwargs = dict(model_name="affine", model_version=3, base_image=base.reference)
    first = build_and_push_image(
        tiny_saved_model, target=f"{local_registry.host}/repro/a", **kwargs
    )
    second = build_and_push_image(copy, target=f"{local_registry.host}/repro/a:again", **kwargs)
    assert first.digest == second.digest
    assert first.model_layer_digest == second.model_layer_digest
    # A different version is a different image.
    third = build_and_push_image(
        tiny_saved_model, target=f"{local_registry.host}/repro/a", **{**kwargs, "model_version": 4}
    )
    assert third.digest != first.digest


def test_push_to_another_registry_copies_base_layers_in_chunks(
    local_registry, second_registry, tiny_saved_model
):
    base = push_base_image(local_registry, "base/cross", "1")
    pushed = build_and_push_image(
        tiny_saved_model,
        target=f"{second_registry.host}/models/cross",
        model_name="affine",
        model_version=1,
        base_image=base.reference,
        # Tiny chunks force the PATCH path for every blob bigger than 1 KiB.
        client_factory=lambda host: reg.RegistryClient(host, chunk_size=1024),
    )
    manifest = _get(
        second_registry, f"models/cross/manifests/{pushed.digest}", Accept=ACCEPT
    ).json()
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = _get(second_registry, f"models/cross/blobs/{descriptor['digest']}").content
        assert len(blob) == descriptor["size"]


def test_arm_only_base_is_refused(local_registry, tiny_saved_model):
    from tfx_serving_ext.cloud_run.errors import ImageBuildError

    base = push_base_image(local_registry, "base/arm", "1", arch="arm64")
    with pytest.raises(ImageBuildError, match="linux/amd64"):
        build_and_push_image(
            tiny_saved_model,
            target=f"{local_registry.host}/models/arm",
            model_name="affine",
            model_version=1,
            base_image=base.reference,
        )


def test_missing_base_image_is_a_clear_error(local_registry, tiny_saved_model):
    with pytest.raises(RegistryError, match=r"HTTP 404"):
        build_and_push_image(
            tiny_saved_model,
            target=f"{local_registry.host}/models/none",
            model_name="affine",
            model_version=1,
            base_image=f"{local_registry.host}/base/absent:1",
        )


def test_image_reference_parsing():
    ref = reg.ImageReference.parse("tensorflow/serving:2.19.1")
    assert (ref.registry, ref.repository, ref.tag) == (
        "registry-1.docker.io",
        "tensorflow/serving",
        "2.19.1",
    )
    assert reg.ImageReference.parse("ubuntu").repository == "library/ubuntu"
    ar = reg.ImageReference.parse("us-central1-docker.pkg.dev/p/r/m@sha256:" + "a" * 64)
    assert (ar.registry, ar.repository, ar.tag) == ("us-central1-docker.pkg.dev", "p/r/m", None)
    local = reg.ImageReference.parse("127.0.0.1:5000/models/x:v1")
    assert (local.registry, local.repository, local.tag) == ("127.0.0.1:5000", "models/x", "v1")
    assert json.dumps(str(local)) == '"127.0.0.1:5000/models/x:v1"'
