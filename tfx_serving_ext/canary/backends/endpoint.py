"""The endpoint backend: an already-running TF Serving (a staging fleet) that serves live traffic.

The candidate is never published where the fleet's version policy could pick it up: it is
copied to `<volume>/.tfx_serving_ext/canary/<token>/1` (TF Serving ignores non-numeric children
of a model's base path, and no policy of the live model reaches that directory) and served
under a model name of its own, `<model>-canary-<token>`, added to the server's model list with
`ModelService.HandleReloadConfigRequest`. The baseline is the live model itself, addressed by
name: exactly what the fleet's clients get. Live traffic keeps going to the old version
throughout; `stop()` sends the fleet's own config again (the canary model is unloaded) and
removes the copy, also when the canary failed.

TFX has no piece for this (InfraValidator only starts servers of its own), so it is written
here. `HandleReloadConfigRequest` replaces the whole model list (there is no call that adds one
model, and none that reads the list back), so the backend must know the fleet's config:
`model_config_file` (the fleet's `--model_config_file`, read here), or, without it, the fleet
is taken to serve `model_name` from the volume with the default `latest` policy, as
`tensorflow_model_server --model_name=... --model_base_path=...` does. A fleet that re-reads its
config file (`--model_config_file_poll_wait_seconds`) would drop the canary model at its next
poll: the canary then sees errors and refuses, it never blesses by accident.

`server_base_path` is the volume's path as the server sees it (a fleet on Kubernetes mounts the
volume elsewhere than the pipeline does); by default the same path. TF Serving reports no
version of itself over its API, so `server_version` is what the caller declares (or None).
"""

from __future__ import annotations

import logging
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from tfx_serving_ext.canary.backends.base import (
    CANDIDATE_VERSION,
    BackendError,
    CanaryModels,
    DeadlineExceeded,
    ModelServerBackend,
    ModelTarget,
)

logger = logging.getLogger(__name__)

CANARY_DIR = Path(".tfx_serving_ext") / "canary"
_RESTORE_TIMEOUT_SECONDS = 120.0


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BackendError(f"endpoint address must be host:port (gRPC), got {address!r}")
    return host.strip("[]"), int(port)


class EndpointBackend(ModelServerBackend):
    """A running TF Serving at `address` whose model `models.model_name` polls `base_path`."""

    def __init__(
        self,
        models: CanaryModels,
        address: str,
        base_path: str | Path,
        *,
        model_config_file: str | Path | None = None,
        server_base_path: str | Path | None = None,
        server_version: str | None = None,
    ):
        super().__init__(models)
        self._address = address
        self._host, self._port = _split_address(address)
        self._base_path = Path(base_path)
        self._server_base_path = (
            Path(server_base_path) if server_base_path else self._base_path.absolute()
        )
        self._model_config_file = Path(model_config_file) if model_config_file else None
        self._server_version = server_version or None
        self._token = uuid.uuid4().hex[:8]
        self.canary_model_name = f"{models.model_name}-canary-{self._token}"
        self._staged: Path | None = None
        self._fleet_config = None
        self._reloaded = False

    def __repr__(self) -> str:
        return (
            f"EndpointBackend(address={self._address}, volume={self._base_path}, "
            f"canary model={self.canary_model_name})"
        )

    @property
    def address(self) -> str:
        """Returns the gRPC address of the fleet's server."""
        return self._address

    @property
    def server_version(self) -> str | None:
        """Returns the server's version as declared by the caller (TF Serving reports none)."""
        return self._server_version

    def identity(self) -> dict[str, Any]:
        return {"address": self._address, "server_version": self._server_version}

    def _relative_stage(self) -> Path:
        return CANARY_DIR / self._token

    def fleet_config(self):
        """Returns the fleet's ModelServerConfig (from its config file, or its one model).

        Raises:
            BackendError: the config file cannot be read, or does not list the model.
        """
        from tfx_serving_ext.protocol.model_config import (
            ModelConfigError,
            model_server_config,
            read_model_server_config,
        )

        if self._model_config_file is None:
            return model_server_config([(self.models.model_name, self._server_base_path)])
        try:
            config = read_model_server_config(self._model_config_file)
        except ModelConfigError as exc:
            raise BackendError(f"cannot read the fleet's model config: {exc}") from exc
        names = [m.name for m in config.model_config_list.config]
        if self.models.model_name not in names:
            raise BackendError(
                f"the fleet's model config {self._model_config_file} does not serve "
                f"{self.models.model_name!r} (it serves {names}); set the ServingSpec's "
                "model_name to the live model's name"
            )
        return config

    def canary_config(self):
        """Returns the fleet's config plus the canary model (latest of its own base path)."""
        config = type(self._fleet_config)()
        config.CopyFrom(self._fleet_config)
        model = config.model_config_list.config.add(
            name=self.canary_model_name,
            base_path=str(self._server_base_path / self._relative_stage()),
            model_platform="tensorflow",
        )
        model.model_version_policy.specific.versions.append(CANDIDATE_VERSION)
        return config

    def start(self) -> None:
        if self._staged is not None:
            raise BackendError("the candidate was already staged; create a new backend")
        self._fleet_config = self.fleet_config()
        stage = self._base_path / self._relative_stage()
        self._staged = stage
        shutil.copytree(self.models.candidate_dir, stage / str(CANDIDATE_VERSION), symlinks=False)
        logger.info(
            "Staged the candidate as model %s at %s, out of reach of %s's version policy",
            self.canary_model_name,
            stage,
            self.models.model_name,
        )

    def wait_until_running(self, deadline: float) -> None:
        """Returns once the server answers and holds the canary model (loaded or failed).

        A candidate that fails to load is not an error here: its state END and the server's
        message reach the client's `wait_until_available`, which refuses it.

        Raises:
            DeadlineExceeded: nothing answered at the address before `deadline`.
            BackendError: the server refused the config (other than the candidate's load).
        """
        from tfx_serving_ext.client.client import ServingClient, ServingError

        if self._staged is None:
            raise BackendError("start() stages the candidate before waiting for it")
        while True:
            try:
                with socket.create_connection((self._host, self._port), timeout=2.0):
                    break
            except OSError:
                if time.time() >= deadline:
                    raise DeadlineExceeded(
                        f"nothing accepts connections at {self._address}"
                    ) from None
                time.sleep(0.5)
        with ServingClient(self._address) as client:
            self._reloaded = True  # from here on, stop() restores the fleet's config
            try:
                client.reload_config(self.canary_config(), timeout=max(1.0, deadline - time.time()))
            except ServingError as exc:
                try:
                    client.model_status(self.canary_model_name)
                except ServingError:
                    raise BackendError(
                        f"the server at {self._address} refused the config that adds the "
                        f"canary model: {exc}"
                    ) from exc
                logger.info("The canary model did not load: %s", exc)

    def get_endpoint(self) -> str:
        return self._address

    def get_logs(self) -> str | None:
        return None  # the fleet's logs are the fleet's

    def targets(self) -> tuple[ModelTarget, ModelTarget | None]:
        from tfx_serving_ext.publish import volume

        candidate = ModelTarget(self.canary_model_name, CANDIDATE_VERSION)
        if not (self._base_path.is_dir() and volume.list_versions(self._base_path)):
            return candidate, None  # a first deployment: nothing serves yet
        # What the fleet's clients get: the live model by name.
        return candidate, ModelTarget(self.models.model_name)

    def stop(self) -> None:
        if self._reloaded:
            self._reloaded = False
            self._restore_fleet_config()
        if self._staged is not None:
            staged, self._staged = self._staged, None
            shutil.rmtree(staged, ignore_errors=True)
            logger.info("Removed the staged candidate %s", staged)

    def _restore_fleet_config(self) -> None:
        from tfx_serving_ext.client.client import ServingClient

        try:
            with ServingClient(self._address) as client:
                client.reload_config(self._fleet_config, timeout=_RESTORE_TIMEOUT_SECONDS)
            logger.info("Restored the fleet's model config (canary model unloaded)")
        except Exception:  # noqa: BLE001 - stop must not raise
            logger.error(
                "Could not restore the model config of %s: model %s may still be loaded; "
                "send the fleet's config with HandleReloadConfigRequest",
                self._address,
                self.canary_model_name,
                exc_info=True,
            )
