"""ServerOptions: the embedded server's settings, named after tensorflow_model_server's flags."""

from __future__ import annotations

from dataclasses import dataclass

from tfx_serving_ext.protocol import tensors


@dataclass
class ServerOptions:
    """Settings of a ModelServer; field names are tensorflow_model_server's flag names.

    Give either `model_name` + `model_base_path` (one model, with `model_version_policy`) or
    `model_config_file` (text-format ModelServerConfig, several models and labels).

    Differences from tensorflow_model_server: `host` defaults to 127.0.0.1 (the real server
    binds every interface); ports 0 mean "any free port" (read them back from the ModelServer);
    `load_retry_interval_seconds` defaults to 1 s instead of 60 s so that a broken version
    reaches END within seconds; start() opens the ports at once unless
    `wait_for_initial_models` (what tensorflow_model_server always does, and what `tfx-serving-ext
    serve` does) — in-process callers usually poll GetModelStatus instead, e.g. with
    ServingClient.wait_until_available, and may start on a volume that is still empty; labels
    in the initial model
    config are taken as given (tensorflow_model_server needs
    --allow_version_labels_for_unavailable_models for that), while a reloaded config is
    refused whole when a label points at a version that is not AVAILABLE, as there.
    """

    model_name: str = ""
    model_base_path: str = ""
    model_config_file: str = ""
    port: int = 0
    rest_api_port: int = 0
    host: str = "127.0.0.1"
    file_system_poll_wait_seconds: float = 1.0
    model_config_file_poll_wait_seconds: float = 0.0
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    rest_api_timeout_in_ms: int = 30000
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 1.0
    # Single-model form: "latest" (keep `model_version_policy_num_versions`), "all", "specific".
    model_version_policy: str = "latest"
    model_version_policy_num_versions: int = 1
    model_version_policy_versions: tuple[int, ...] = ()
    # When False, rest_api_port=0 turns REST off as in tensorflow_model_server; by default
    # the embedded server picks a free port for it instead.
    enable_rest: bool = True
    # This server's own limits (tensorflow_model_server has none of these; `serve` flags of the
    # same names set them). REST: the largest body after gzip/deflate decompression (413 beyond),
    # the open connections (503 beyond), the time to send a request's headers and its body.
    rest_api_max_body_bytes: int = 64 * 1024 * 1024
    rest_api_max_connections: int = 512
    rest_api_header_timeout_seconds: float = 10.0
    rest_api_body_timeout_seconds: float = 30.0
    # Every Predict's input tensors, checked before they are decoded (INVALID_ARGUMENT beyond):
    # highest rank, elements and bytes (strings by their length) of all inputs together.
    request_max_rank: int = tensors.DEFAULT_LIMITS.max_rank
    request_max_elements: int = tensors.DEFAULT_LIMITS.max_elements
    request_max_bytes: int = tensors.DEFAULT_LIMITS.max_bytes
    # gRPC: the largest request message (TF Serving's is INT_MAX; RESOURCE_EXHAUSTED beyond) and
    # calls at once on one connection (0 = gRPC's default, unlimited).
    grpc_max_message_bytes: int = 2**31 - 1
    grpc_max_concurrent_streams: int = 0
    # As tensorflow_model_server: open the ports only once every model of the initial config
    # has a version AVAILABLE (warmup included); a model whose versions all fail to load makes
    # start() raise InitialModelsUnavailable naming it. A model with no version on disk is
    # waited for, as there, up to `initial_models_timeout_seconds` (0 = forever).
    wait_for_initial_models: bool = False
    initial_models_timeout_seconds: float = 0.0
    # TF Serving's default: Classify/Regress run any signature whose inputs and outputs fit and
    # Predict runs any signature, whatever its method_name (TF2 exports mark every signature
    # `tensorflow/serving/predict`). True checks method names strictly.
    enable_signature_method_name_check: bool = False
    # tensorflow_model_server's --grpc_max_threads and --rest_api_num_threads.
    grpc_max_workers: int = 16
    rest_max_workers: int = 16
    # Also listen for gRPC on this Unix socket (--grpc_socket_path); "" = TCP only.
    grpc_socket_path: str = ""
    # --grpc_channel_arguments: "key=value,key=value" (an integer value is passed as one),
    # applied after the server's own defaults, so they win.
    grpc_channel_arguments: str = ""
    # --saved_model_tags: the tag set of the meta graph to load.
    saved_model_tags: tuple[str, ...] = ("serve",)
    # --allow_version_labels_for_unavailable_models: a reloaded config may give a NEW label to a
    # version that is not AVAILABLE yet (moving an existing label still needs an AVAILABLE one).
    allow_version_labels_for_unavailable_models: bool = False
    # --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism (0 = TensorFlow's
    # choice); applied by start() before any model loads, if TensorFlow has not run yet.
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    # --enable_batching: concurrent requests to one signature run as one batch (server/batching);
    # --batching_parameters_file: text-format BatchingParameters ("" = TF Serving's defaults);
    # --enable_per_model_batching_parameters: a version's batching_params.pbtxt wins.
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_per_model_batching_parameters: bool = False
    # --monitoring_config_file: text-format MonitoringConfig; with prometheus_config.enable, the
    # REST port serves TF Serving's metrics at its path (default /monitoring/prometheus/metrics).
    monitoring_config_file: str = ""
    # --ssl_config_file: text-format SSLConfig (PEM texts); gRPC is then served over TLS only.
    ssl_config_file: str = ""

    def request_limits(self) -> tensors.RequestLimits:
        """Returns the bounds every request's input tensors are checked against."""
        return tensors.RequestLimits(
            max_rank=self.request_max_rank,
            max_elements=self.request_max_elements,
            max_bytes=self.request_max_bytes,
        )
