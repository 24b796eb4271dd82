"""ModelServer: the embedded TF-Serving-compatible server (gRPC + REST) in one object."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from tfx_serving_ext.protocol import model_config as config_lib
from tfx_serving_ext.protocol.errors import ServingError
from tfx_serving_ext.server.batching import ServerBatching
from tfx_serving_ext.server.config_protos import monitoring_config_class, read_text_proto
from tfx_serving_ext.server.core import ServerCore
from tfx_serving_ext.server.grpc_service import start_grpc_server
from tfx_serving_ext.server.manager import LoadPolicy
from tfx_serving_ext.server.metrics import DEFAULT_PROMETHEUS_PATH
from tfx_serving_ext.server.options import ServerOptions
from tfx_serving_ext.server.rest_service import RestServer
from tfx_serving_ext.server.tls import read_ssl_config, server_credentials

logger = logging.getLogger(__name__)


class InitialModelsUnavailable(ServingError):
    """Models of the initial config did not become available, so the server did not start."""

    def __init__(self, failures: dict[str, str]):
        details = "; ".join(f"{name}: {error}" for name, error in sorted(failures.items()))
        super().__init__("UNKNOWN", f"{len(failures)} model(s) did not become available: {details}")
        self.failures = failures


def _prometheus_path(monitoring_config_file: str) -> str:
    """Returns where the REST port serves metrics per --monitoring_config_file ("" = nowhere).

    Raises:
        ConfigFileError: the file cannot be read or does not parse.
    """
    if not monitoring_config_file:
        return ""
    config = read_text_proto(
        monitoring_config_file, monitoring_config_class(), "--monitoring_config_file"
    )
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return ""
    return prometheus.path or DEFAULT_PROMETHEUS_PATH


def _set_tensorflow_threading(intra_op: int, inter_op: int) -> None:
    """Applies --tensorflow_intra/inter_op_parallelism (0 = leave TensorFlow's choice).

    TensorFlow fixes its thread pools when it first runs an op; in a process where that has
    happened already (an in-process server after other TensorFlow work) the settings cannot
    change any more, which is logged rather than refused.
    """
    if intra_op <= 0 and inter_op <= 0:
        return
    import tensorflow as tf

    try:
        if intra_op > 0:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op > 0:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as exc:
        logger.warning("TensorFlow has already started; thread settings unchanged: %s", exc)
        return
    logger.info(
        "TensorFlow threads: intra-op %d, inter-op %d (0 = TensorFlow's choice)", intra_op, inter_op
    )


class ModelServer:
    """Runs the embedded model server in this process.

    Example:
        with ModelServer(ServerOptions(model_name="m", model_base_path="/models/m")) as server:
            client = ServingClient(server.grpc_address)
            client.wait_until_available("m")
    """

    def __init__(self, options: ServerOptions):
        if not options.model_config_file and not (options.model_name and options.model_base_path):
            raise ValueError(
                "ServerOptions needs model_name and model_base_path, or model_config_file"
            )
        if options.model_config_file and options.model_base_path:
            raise ValueError("Give model_base_path or model_config_file, not both")
        self.options = options
        self._core: ServerCore | None = None
        self._grpc_server = None
        self._rest_server: RestServer | None = None
        self._config_poller: threading.Thread | None = None
        self._stop_polling = threading.Event()
        self.grpc_port = 0
        self.rest_port = 0

    @property
    def core(self) -> ServerCore:
        """Returns the ServerCore (models, managers) of a started server."""
        if self._core is None:
            raise RuntimeError("ModelServer is not started")
        return self._core

    @property
    def grpc_address(self) -> str:
        """Returns "host:port" of the gRPC API."""
        return f"{self.options.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        """Returns "http://host:port" of the REST API."""
        return f"http://{self.options.host}:{self.rest_port}"

    def _initial_config(self):
        options = self.options
        if options.model_config_file:
            return config_lib.read_model_server_config(options.model_config_file)
        return config_lib.model_server_config(
            [(options.model_name, options.model_base_path)],
            options.model_version_policy,
            options.model_version_policy_num_versions,
            tuple(options.model_version_policy_versions),
        )

    def start(self) -> ModelServer:
        """Returns self after binding both APIs and starting to load the models.

        Raises:
            ModelConfigError: the model config file does not parse or is invalid (e.g. a
                model listed twice).
            OSError: a port cannot be bound.
        """
        options = self.options
        config = self._initial_config()
        try:
            config_lib.validated_model_configs(config)
        except ServingError as exc:
            raise config_lib.ModelConfigError(exc.message) from exc
        # Both files are read before any model loads: a typo fails start-up at once.
        metrics_path = _prometheus_path(options.monitoring_config_file)
        credentials = (
            server_credentials(read_ssl_config(options.ssl_config_file))
            if options.ssl_config_file
            else None
        )
        _set_tensorflow_threading(
            options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism
        )
        core = ServerCore(
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            enable_model_warmup=options.enable_model_warmup,
            num_request_iterations_for_warmup=options.num_request_iterations_for_warmup,
            load_policy=LoadPolicy(
                options.max_num_load_retries, options.load_retry_interval_seconds
            ),
            enable_signature_method_name_check=options.enable_signature_method_name_check,
            saved_model_tags=tuple(options.saved_model_tags),
            allow_version_labels_for_unavailable_models=(
                options.allow_version_labels_for_unavailable_models
            ),
            batching=ServerBatching.from_options(options),
            request_limits=options.request_limits(),
        )
        self._core = core
        try:
            core.start(config)
            if options.wait_for_initial_models:
                self._wait_for_initial_models(core)
            self._grpc_server = start_grpc_server(
                core,
                options.host,
                options.port,
                options.grpc_max_workers,
                socket_path=options.grpc_socket_path,
                channel_arguments=options.grpc_channel_arguments,
                credentials=credentials,
                max_message_bytes=options.grpc_max_message_bytes,
                max_concurrent_streams=options.grpc_max_concurrent_streams,
            )
            self.grpc_port = self._grpc_server.port
            logger.info("Running gRPC ModelServer at %s ...", self.grpc_address)
            if options.grpc_socket_path:
                logger.info(
                    "Running gRPC ModelServer at UNIX socket %s ...", options.grpc_socket_path
                )
            if options.enable_rest or options.rest_api_port:
                self._rest_server = RestServer(
                    core,
                    options.host,
                    options.rest_api_port,
                    timeout_seconds=options.rest_api_timeout_in_ms / 1000.0,
                    max_body_bytes=options.rest_api_max_body_bytes,
                    max_workers=options.rest_max_workers,
                    max_connections=options.rest_api_max_connections,
                    header_timeout_seconds=options.rest_api_header_timeout_seconds,
                    body_timeout_seconds=options.rest_api_body_timeout_seconds,
                    metrics_path=metrics_path,
                )
                self.rest_port = self._rest_server.start()
                logger.info("Exporting HTTP/REST API at: %s ...", self.rest_url)
                if metrics_path:
                    logger.info("Prometheus metrics at %s%s", self.rest_url, metrics_path)
            elif metrics_path:
                logger.warning("--monitoring_config_file: no REST port, so no metrics page")
        except BaseException:
            self.stop()
            raise
        if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
            self._config_poller = threading.Thread(
                target=self._poll_config_file, name="model-config-poller", daemon=True
            )
            self._config_poller.start()
        return self

    def _wait_for_initial_models(self, core: ServerCore) -> None:
        """Returns once every configured model has a version AVAILABLE, as ServerCore::Create.

        Raises:
            InitialModelsUnavailable: every version of a model failed to load (state END), or
                `initial_models_timeout_seconds` passed first.
        """
        timeout = self.options.initial_models_timeout_seconds
        deadline = time.monotonic() + timeout if timeout > 0 else None
        pending = set(core.model_names())
        failures: dict[str, str] = {}
        said_waiting: set[str] = set()
        while pending:
            for name in sorted(pending):
                manager = core.manager(name)
                if manager.available_versions():
                    pending.discard(name)
                    continue
                records = manager.version_states()
                if (
                    records
                    and manager.wait_until_settled(0)
                    and all(r.state == "END" for r in records)
                ):
                    failures[name] = next(
                        (r.error_message for r in records if r.error_code != "OK"),
                        "every version ended without loading",
                    )
                    pending.discard(name)
                elif not records and name not in said_waiting:
                    said_waiting.add(name)
                    logger.warning(
                        "No versions of servable %s found yet: the ports open once one is "
                        "AVAILABLE (as tensorflow_model_server does)",
                        name,
                    )
            if pending and deadline is not None and time.monotonic() > deadline:
                for name in pending:
                    failures[name] = f"not AVAILABLE within {timeout:g} s"
                break
            if pending:
                time.sleep(0.05)
        if failures:
            raise InitialModelsUnavailable(failures)
        logger.info("Every model of the initial config is AVAILABLE: opening the ports")

    def _poll_config_file(self) -> None:
        path = Path(self.options.model_config_file)
        last_text = path.read_text() if path.is_file() else None
        while not self._stop_polling.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                text = path.read_text()
                if text == last_text:
                    continue
                last_text = text
                config = config_lib.parse_model_server_config(text)
                logger.info("Model config file %s changed: reloading", path)
                self.core.reload_config(config, wait_timeout=0.0)
            except Exception as exc:  # keep the old config, as TF Serving does
                logger.error("Keeping the current model config: %s", exc)

    def stop(self) -> None:
        """Stops both APIs (in-flight gRPC calls get 5 s to finish) and unloads the models."""
        self._stop_polling.set()
        if self._config_poller is not None:
            self._config_poller.join(timeout=10)
        if self._rest_server is not None:
            self._rest_server.stop()
            self._rest_server = None
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=5)
            self._grpc_server = None
        if self._core is not None:
            self._core.stop()

    def wait_for_termination(self, timeout: float | None = None) -> None:
        """Blocks until the gRPC server stops (or `timeout` passes)."""
        if self._grpc_server is not None:
            self._grpc_server.wait_for_termination(timeout)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
