"""Which registry digest the report records for the image a canary ran: its own repository's.

The attrs are what `docker image inspect` gives for an image pulled under one name and retagged
under others (no Docker daemon runs here, so they are written out as the engine returns them).
"""

from __future__ import annotations

import pytest

from tfx_serving_ext.canary.backends.base import BackendError
from tfx_serving_ext.canary.backends.docker import normalized_repository, registry_digest

HUB = "sha256:" + "1a" * 32  # tensorflow/serving:2.19.1 on Docker Hub
MIRROR = "sha256:" + "2b" * 32  # the same image pushed to a company mirror
UBUNTU = "sha256:" + "3c" * 32
IMAGE_ID = "sha256:" + "4d" * 32


def _attrs(repo_tags: list[str], repo_digests: list[str]) -> dict:
    """Returns an image's attrs as `docker image inspect` (and docker-py's `.attrs`) give them."""
    return {
        "Id": IMAGE_ID,
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Created": "2025-06-10T17:02:11.412365118Z",
        "Architecture": "amd64",
        "Os": "linux",
        "Size": 493765438,
    }


# Pulled from the mirror first, then from Docker Hub: the engine lists the mirror first.
MIRRORED = _attrs(
    ["registry.example.com/ml/tf-serving:2.19.1", "tensorflow/serving:2.19.1"],
    [f"registry.example.com/ml/tf-serving@{MIRROR}", f"tensorflow/serving@{HUB}"],
)


@pytest.mark.parametrize(
    "image",
    [
        "tensorflow/serving:2.19.1",
        "docker.io/tensorflow/serving:2.19.1",
        "index.docker.io/tensorflow/serving:2.19.1",
        "tensorflow/serving",
    ],
)
def test_a_hub_reference_records_the_hub_digest_not_the_mirror_listed_first(image):
    assert registry_digest(image, MIRRORED) == HUB


def test_the_mirror_reference_records_the_mirror_digest():
    assert registry_digest("registry.example.com/ml/tf-serving:2.19.1", MIRRORED) == MIRROR


def test_an_official_image_matches_whatever_way_library_is_written():
    attrs = _attrs(["ubuntu:24.04"], [f"ubuntu@{UBUNTU}"])
    for image in ("ubuntu:24.04", "docker.io/ubuntu:24.04", "docker.io/library/ubuntu:24.04"):
        assert registry_digest(image, attrs) == UBUNTU, image
    long_form = _attrs(["ubuntu:24.04"], [f"docker.io/library/ubuntu@{UBUNTU}"])
    assert registry_digest("ubuntu:24.04", long_form) == UBUNTU


def test_an_image_retagged_locally_records_no_other_repositorys_digest():
    """`docker tag tensorflow/serving:2.19.1 my-serving:canary`: my-serving was never pushed."""
    attrs = _attrs(
        ["my-serving:canary", "tensorflow/serving:2.19.1"], [f"tensorflow/serving@{HUB}"]
    )
    assert registry_digest("my-serving:canary", attrs) is None
    assert registry_digest("localhost:5000/tensorflow/serving:2.19.1", attrs) is None


def test_an_image_built_here_and_never_pushed_has_no_registry_digest():
    assert registry_digest("tf-serving-dev:latest", _attrs(["tf-serving-dev:latest"], [])) is None
    assert registry_digest("tf-serving-dev:latest", {"Id": IMAGE_ID, "RepoDigests": None}) is None


def test_a_reference_by_digest_is_its_own_answer_whatever_the_engine_lists():
    assert registry_digest(f"tensorflow/serving@{HUB}", MIRRORED) == HUB
    assert registry_digest(f"tensorflow/serving:2.19.1@{MIRROR}", {}) == MIRROR


def test_a_registry_with_a_port_is_not_read_as_a_tag():
    attrs = _attrs(["localhost:5000/serving:dev"], [f"localhost:5000/serving@{MIRROR}"])
    assert normalized_repository("localhost:5000/serving:dev") == "localhost:5000/serving"
    assert registry_digest("localhost:5000/serving:dev", attrs) == MIRROR
    assert registry_digest("localhost:5000/serving", attrs) == MIRROR


def test_a_reference_without_a_repository_is_refused_with_the_expected_form():
    with pytest.raises(BackendError, match=r"names no repository; write it as name\[:tag\]"):
        registry_digest(":2.19.1", MIRRORED)
