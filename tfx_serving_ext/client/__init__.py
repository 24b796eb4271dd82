"""ServingClient: talks to any TF Serving (embedded or real) over gRPC or REST."""

from tfx_serving_ext.client.client import (
    ClassifyResult,
    PredictResult,
    RegressResult,
    ServerUnreachable,
    ServingClient,
    ServingError,
    ServingTimeout,
    VersionLoadFailed,
    VersionStatus,
)

__all__ = [
    "ClassifyResult",
    "PredictResult",
    "RegressResult",
    "ServerUnreachable",
    "ServingClient",
    "ServingError",
    "ServingTimeout",
    "VersionLoadFailed",
    "VersionStatus",
]
