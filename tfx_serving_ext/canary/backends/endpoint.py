"""The endpoint backend: an already-running TF Serving (a staging fleet) that serves live traffic.

The candidate is never published where the fleet's version policy could pick it up: it is
copied to `<volume>/.tfx_serving_ext/canary/<token>/1` (TF Serving ignores non-numeric children
of a model's base path, and no policy of the live model reaches that directory) and served
under a model name of its own, `<model>-canary-<token>`, added to the server's model list with
`ModelService.HandleReloadConfigRequest`. The baseline is the live model itself, addressed by
name: exactly what the fleet's clients get. Live traffic keeps going to the old version
throughout; `stop()` sends the fleet's own config again (the canary model is unloaded) and
removes the copy, also when the canary failed.

A fleet is several replicas behind one name, and a reload reaches only the replica its
connection lands on. The address is therefore resolved as `publish.fleet` resolves a fleet
(`resolve_fleet`): `dns:///name:port` (a Kubernetes headless Service) is one replica per A/AAAA
record, and a comma-separated list names replicas one by one. Every replica gets the canary
config and every replica gets the fleet's config back; the canary's requests go to the first.
A plain `name:port` is one replica: behind a ClusterIP Service that is one random pod, so name
a fleet with `dns:///`.

TFX has no piece for this (InfraValidator only starts servers of its own), so it is written
here. `HandleReloadConfigRequest` replaces the whole model list (there is no call that adds one
model, and none that reads the list back), so the backend must know the fleet's config:
`model_config_file` (the fleet's `--model_config_file`, read here), or, without it, the fleet
is taken to serve `model_name` from the volume with the default `latest` policy, as
`tensorflow_model_server --model_name=... --model_base_path=...` does. The file is read again at
`stop()`: a push or a new label written during the canary is what the fleet gets back (the
config read at start only when the file cannot be read any more). A fleet that re-reads its
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
from tfx_serving_ext.publish.fleet import DNS_PREFIX, FleetError, resolve_fleet

logger = logging.getLogger(__name__)

CANARY_DIR = Path(".tfx_serving_ext") / "canary"
_RESTORE_TIMEOUT_SECONDS = 120.0


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in host:
        raise BackendError(
            f"endpoint address must be host:port (gRPC) or dns:///name:port, got {address!r}"
        )
    return host.strip("[]"), int(port)


def _endpoint_entries(address: str) -> list[str]:
    """Returns the comma-separated entries of an endpoint address (host:port checked).

    Raises:
        BackendError: an empty address, or an entry that is neither host:port nor dns:///.
    """
    entries = [entry.strip() for entry in address.split(",") if entry.strip()]
    if not entries:
        raise BackendError(
            "the endpoint address is empty: give the fleet's gRPC host:port, a comma-separated "
            "list of them, or dns:///name:port"
        )
    for entry in entries:
        if not entry.startswith(DNS_PREFIX):
            _split_address(entry)
    return entries


def resolve_replicas(
    address: str, *, resolver: Callable[..., list] = socket.getaddrinfo
) -> list[str]:
    """Returns the gRPC address of every replica behind an endpoint address.

    `dns:///name:port` is one replica per A/AAAA record of `name`, as `publish.fleet` resolves
    a fleet; a comma-separated list is each of its entries.

    Raises:
        BackendError: a malformed entry, or a name that resolves to nothing.
    """
    try:
        replicas = resolve_fleet(_endpoint_entries(address), resolver=resolver)
    except FleetError as exc:
        raise BackendError(f"cannot name the replicas of the endpoint: {exc}") from exc
    for replica in replicas:
        _split_address(replica)
    return replicas


def _wait_for_connection(address: str, deadline: float) -> None:
    host, port = _split_address(address)
    while True:
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return
        except OSError:
            if time.time() >= deadline:
                raise DeadlineExceeded(f"nothing accepts connections at {address}") from None
            time.sleep(0.5)


def _on_every_replica(replicas: list[str], send: Callable[[str], Any]) -> dict[str, Any]:
    """Returns `send(replica)`'s answer, or the exception it raised, for every replica at once."""
    with ThreadPoolExecutor(max_workers=len(replicas), thread_name_prefix="endpoint") as pool:
        futures = {replica: pool.submit(send, replica) for replica in replicas}
    return {
        replica: future.exception() if future.exception() else future.result()
        for replica, future in futures.items()
    }


class EndpointBackend(ModelServerBackend):
    """A running TF Serving fleet at `address` whose model `models.model_name` polls
    `base_path`; `resolver` looks up `dns:///` names (socket.getaddrinfo's signature)."""

    def __init__(
        self,
        models: CanaryModels,
        address: str,
        base_path: str | Path,
        *,
        model_config_file: str | Path | None = None,
        server_base_path: str | Path | None = None,
        server_version: str | None = None,
        resolver: Callable[..., list] = socket.getaddrinfo,
    ):
        super().__init__(models)
        self._address = address
        _endpoint_entries(address)
        self._resolver = resolver
        self._replicas: list[str] = []
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
        self._reloaded: list[str] = []  # the replicas sent the canary config: stop() restores

    def __repr__(self) -> str:
        return (
            f"EndpointBackend(address={self._address}, volume={self._base_path}, "
            f"canary model={self.canary_model_name})"
        )

    @property
    def address(self) -> str:
        """Returns the fleet's address as given (one replica, a list, or dns:///name:port)."""
        return self._address

    @property
    def replicas(self) -> list[str]:
        """Returns the gRPC address of each replica, resolved by start() (empty before)."""
        return list(self._replicas)

    @property
    def server_version(self) -> str | None:
        """Returns the server's version as declared by the caller (TF Serving reports none)."""
        return self._server_version

    def identity(self) -> dict[str, Any]:
        return {
            "address": self._address,
            "replicas": list(self._replicas),
            "server_version": self._server_version,
        }

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
        self._replicas = resolve_replicas(self._address, resolver=self._resolver)
        self._fleet_config = self.fleet_config()
        stage = self._base_path / self._relative_stage()
        self._staged = stage
        shutil.copytree(self.models.candidate_dir, stage / str(CANDIDATE_VERSION), symlinks=False)
        logger.info(
            "Staged the candidate as model %s at %s, out of reach of %s's version policy; "
            "replicas: %s",
            self.canary_model_name,
            stage,
            self.models.model_name,
            ", ".join(self._replicas),
        )

    def wait_until_running(self, deadline: float) -> None:
        """Returns once every replica answers and holds the canary model (loaded or failed).

        A candidate that fails to load on the replica the canary's requests go to is not an
        error here: its state END and the server's message reach the client's
        `wait_until_available`, which refuses it.

        Raises:
            DeadlineExceeded: a replica accepted no connection before `deadline`.
            BackendError: a replica refused the config (other than the candidate's load), or
                the candidate loaded on the canary's replica but not on another.
        """
        if self._staged is None:
            raise BackendError("start() stages the candidate before waiting for it")
        for replica in self._replicas:
            _wait_for_connection(replica, deadline)
        config = self.canary_config()
        self._reloaded = list(self._replicas)  # from here on, stop() restores the fleet's config
        answers = _on_every_replica(
            self._replicas, lambda replica: self._add_canary_model(replica, config, deadline)
        )
        refused = [answer for answer in answers.values() if isinstance(answer, BaseException)]
        if refused:
            raise refused[0]
        not_loaded = {replica: why for replica, why in answers.items() if why}
        for replica, why in not_loaded.items():
            logger.info("The canary model did not load on %s: %s", replica, why)
        if not_loaded and self.get_endpoint() not in not_loaded:
            raise BackendError(
                f"the candidate loaded on {self.get_endpoint()} but not on "
                + "; ".join(f"{replica}: {why}" for replica, why in not_loaded.items())
                + "; the replicas differ (server version, flags?): align them and run again"
            )

    def _add_canary_model(self, replica: str, config, deadline: float) -> str | None:
        """Returns None once `replica` loaded the canary model, else why it did not load.

        Raises:
            BackendError: the replica refused the config itself.
        """
        from tfx_serving_ext.client.client import ServingClient, ServingError

        with ServingClient(replica) as client:
            try:
                client.reload_config(config, timeout=max(1.0, deadline - time.time()))
            except ServingError as exc:
                try:
                    client.model_status(self.canary_model_name)
                except ServingError:
                    raise BackendError(
                        f"the server at {replica} refused the config that adds the canary "
                        f"model: {exc}"
                    ) from exc
                return str(exc)
        return None

    def get_endpoint(self) -> str:
        """Returns the replica the canary's requests go to: the first one resolved."""
        if not self._replicas:
            raise BackendError("start() resolves the fleet's replicas before they are addressed")
        return self._replicas[0]

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
            reloaded, self._reloaded = self._reloaded, []
            self._restore_fleet_config(reloaded)
        if self._staged is not None:
            staged, self._staged = self._staged, None
            shutil.rmtree(staged, ignore_errors=True)
            logger.info("Removed the staged candidate %s", staged)

    def config_to_restore(self):
        """Returns the ModelServerConfig the fleet gets back: its config file as it reads now.

        The file may have changed since start() (a push, a label): what it says now is the
        fleet's config. Without a config file, or when it cannot be read any more (logged),
        the config read at start.
        """
        from tfx_serving_ext.protocol.model_config import (
            ModelConfigError,
            read_model_server_config,
        )

        if self._model_config_file is None:
            return self._fleet_config
        try:
            return read_model_server_config(self._model_config_file)
        except ModelConfigError as exc:
            logger.error(
                "Cannot re-read the fleet's model config (%s): restoring the config read at "
                "start; once the file is fixed, send it to every replica with "
                "HandleReloadConfigRequest",
                exc,
            )
            return self._fleet_config

    def _restore_fleet_config(self, replicas: list[str]) -> None:
        config = self.config_to_restore()
        answers = _on_every_replica(replicas, lambda replica: self._send_config(replica, config))
        for replica, answer in answers.items():
            if isinstance(answer, BaseException):  # stop must not raise: say what to do
                logger.error(
                    "Could not restore the model config of %s: model %s may still be loaded; "
                    "send the fleet's config with HandleReloadConfigRequest (%s)",
                    replica,
                    self.canary_model_name,
                    answer,
                )
            else:
                logger.info("Restored the fleet's model config on %s (canary unloaded)", replica)

    @staticmethod
    def _send_config(replica: str, config) -> None:
        from tfx_serving_ext.client.client import ServingClient

        with ServingClient(replica) as client:
            client.reload_config(config, timeout=_RESTORE_TIMEOUT_SECONDS)
