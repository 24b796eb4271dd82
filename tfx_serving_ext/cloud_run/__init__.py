"""The Cloud Run destination: daemonless model image build, registry push, Cloud Run deploy.

Public API:
    push_to_cloud_run(model_dir, CloudRunConfig(...)) -> CloudRunPushResult
    build_and_push_image(...) -> PushedImage              (image only)
    CloudRunDeployer(...).deploy_revision / promote / rollback
    knative_service(...) / write_knative_manifest(...)
"""

from tfx_serving_ext.cloud_run.config import CloudRunConfig, CloudRunConfigError
from tfx_serving_ext.cloud_run.errors import (
    CloudRunError,
    DeployError,
    DeployTimeout,
    ImageBuildError,
    RegistryAuthError,
    RegistryError,
)
from tfx_serving_ext.cloud_run.push import CloudRunPushResult, push_to_cloud_run

__all__ = [
    "CloudRunConfig",
    "CloudRunConfigError",
    "CloudRunError",
    "CloudRunPushResult",
    "DeployError",
    "DeployTimeout",
    "ImageBuildError",
    "RegistryAuthError",
    "RegistryError",
    "push_to_cloud_run",
]
