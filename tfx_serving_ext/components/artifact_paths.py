"""Local file paths for artifact URIs, the way Kubeflow Pipelines v2 makes them available.

Our executors read and write files with `pathlib` and hand paths to TensorFlow and to the model
server. Under LocalDagRunner and the tfx CLI artifact URIs are local paths already. Under
Kubeflow Pipelines v2 and Vertex Pipelines they are object-store URIs, and the container sees
them under KFP's mount roots (Vertex mounts Cloud Storage FUSE at /gcs):

    gs://bucket/root/Trainer/model/7  ->  /gcs/bucket/root/Trainer/model/7
    minio://bucket/...                ->  /minio/bucket/...
    s3://bucket/...                   ->  /s3/bucket/...

MLMD keeps the original URIs: only the executor's file I/O goes through these paths.
"""

from __future__ import annotations

from pathlib import Path

from tfx import types

# KFP v2's convention for object-store artifacts (kfp.dsl.Artifact.path does the same).
REMOTE_MOUNTS = {"gs://": "/gcs/", "minio://": "/minio/", "s3://": "/s3/"}


class RemoteUriError(ValueError):
    """An artifact URI points at an object store that is not mounted in this container."""


def local_path(uri: str) -> str:
    """Returns the local file path at which the executor can read and write `uri`.

    Raises:
        RemoteUriError: `uri` has a scheme with no local mount here, or an unknown scheme.
    """
    for prefix, mount in REMOTE_MOUNTS.items():
        if uri.startswith(prefix):
            if not Path(mount).is_dir():
                raise RemoteUriError(
                    f"Artifact {uri} is in an object store, but {mount} is not mounted in this "
                    "container. Run on Vertex Pipelines (which mounts Cloud Storage at /gcs), "
                    f"mount the bucket at {mount} (e.g. with gcsfuse), or use a pipeline root on "
                    "a mounted volume."
                )
            return mount + uri[len(prefix) :]
    if "://" in uri:
        raise RemoteUriError(
            f"Artifact {uri} has a URI scheme this package cannot read; supported: local paths "
            f"and {', '.join(REMOTE_MOUNTS)} (through their mounts)"
        )
    return uri


def artifact_path(artifact: types.Artifact) -> str:
    """Returns the local file path of `artifact`'s URI (see `local_path`)."""
    return local_path(artifact.uri)
