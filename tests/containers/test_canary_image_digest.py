"""The canary on the Docker backend, live: every tag and digest of the ServingSpec, each digest.

The TF Serving image (the stand-in, or TF_SERVING_IMAGE) is pushed to the registry in the
engine's namespace, so the engine knows its repository digest as it would for an image pulled
from Docker Hub. The ServingSpec then names it twice, by tag and by that digest: as with
InfraValidator, the model must pass on each, and the blessing records every image with the
digest it resolved to. The executor runs inside the engine's namespace
(`canary_in_netns.py`), where the container's published port is.
"""

from __future__ import annotations

import json
import sys

import pytest
from tfx.proto import infra_validator_pb2
from tfx.utils import proto_utils

from tests.containers.engine import REPO_ROOT
from tests.containers.fixtures import leftovers


@pytest.fixture()
def image_in_registry(docker_engine, tf_serving_image, netns_registry):
    """Yields (repository, tag, digest, image id) of the TF Serving image pushed to the registry."""
    client = docker_engine.client()
    repository = f"{netns_registry.host}/{tf_serving_image.repository}"
    tag = tf_serving_image.tag
    try:
        image = client.images.get(tf_serving_image.reference)
        image.tag(repository, tag)
        for line in client.images.push(repository, tag, stream=True, decode=True):
            assert "error" not in line, line
        image.reload()
        [digest] = [
            reference.split("@", 1)[1]
            for reference in image.attrs["RepoDigests"]
            if reference.split("@", 1)[0] == repository
        ]
        yield repository, tag, digest, image.id
        client.images.remove(f"{repository}:{tag}")
    finally:
        client.close()


def _examples_artifact(records: list[bytes], root):
    import tensorflow as tf

    split = root / "Split-eval"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data.gz"), options="GZIP") as writer:
        for record in records:
            writer.write(record)
    return root


def test_live_docker_canary_passes_every_tag_and_digest_and_the_blessing_records_each_digest(
    docker_engine, image_in_registry, penguin_model_dir, penguin_examples, tmp_path
):
    repository, tag, digest, image_id = image_in_registry
    spec = infra_validator_pb2.ServingSpec(model_name="penguin", local_docker={})
    spec.tensorflow_serving.image_name = repository
    spec.tensorflow_serving.tags.append(tag)
    spec.tensorflow_serving.digests.append(digest)
    records = [e.SerializeToString() for e in penguin_examples[::10][:20]]
    kwargs = {
        "model_uri": str(penguin_model_dir),
        "examples_uri": str(_examples_artifact(records, tmp_path / "examples")),
        "blessing_uri": str(tmp_path / "blessing"),
        "tmp_dir": str(tmp_path / "tmp"),
        "serving_spec_json": proto_utils.proto_to_json(spec),
        "canary_config": {
            "backend": "docker",
            "num_requests": 20,
            "num_examples": 10,
            "unmeasured_requests": 2,
            "require_tf_serving": True,
        },
    }
    result_path = tmp_path / "result.json"
    docker_engine.run_in_netns(
        [
            sys.executable,
            "-m",
            "tests.containers.canary_in_netns",
            json.dumps(kwargs),
            str(result_path),
        ],
        timeout=900,
        cwd=REPO_ROOT,
    )
    result = json.loads(result_path.read_text())
    properties, report = result["properties"], result["report"]
    why = {
        "reasons": report["verdict"]["reasons"],
        "attempts": report.get("attempts"),
        "images": report.get("images"),
        "log": (report.get("server_log_tail") or "")[-2000:],
    }
    assert properties["blessed"] == 1, json.dumps(why, indent=1)
    assert properties["tf_serving"] == 1
    # Both images ran, in the ServingSpec's order, and each is recorded with its digest.
    assert [(i["image"], i["blessed"]) for i in report["images"]] == [
        (f"{repository}:{tag}", True),
        (f"{repository}@{digest}", True),
    ]
    assert properties["server_image"] == f"{repository}:{tag}, {repository}@{digest}"
    assert properties["server_image_digest"] == f"{digest}, {digest}"  # the tag resolved to it
    assert properties["server_image_id"] == f"{image_id}, {image_id}"
    assert report["server"]["image_digest"] == digest
    assert digest in report["server"]["description"]
    assert leftovers(docker_engine) == {"containers": [], "networks": [], "volumes": []}
