"""The gRPC front end: tensorflow.serving PredictionService and ModelService.

Both services are one table of methods (request message, the core's call) served in one of two
ways. Without server-side batching, a `grpc.server` runs each call in one of `max_workers`
threads (TF Serving's --grpc_max_threads), as TF Serving's gRPC threads each run their own
Session. With batching, a `grpc.aio` server (`grpc_event_loop`) runs calls as coroutines, so
that a Predict waits for its batch without holding a thread: the requests a batch gathers would
otherwise each hold (and wake) a thread, and in Python a thread handoff costs as much as the
model's work on a small request, which kept batches at about 3 requests and batching's gain
at 1.05-1.45x. Unbatched calls keep the threaded server because there the event loop would
only add a handoff to a worker thread (about 0.4 ms more per lone request).

Each handler parses its own request, so bytes that are not the method's request message get
INTERNAL on both servers, as from TF Serving's C++ gRPC (asyncio gRPC would say UNKNOWN).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent import futures

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

from tfx_serving_ext.protocol.errors import ServingError, from_exception
from tfx_serving_ext.server.core import ServerCore

logger = logging.getLogger(__name__)

# TF Serving accepts messages up to INT_MAX bytes (ServerBuilder::SetMaxMessageSize(kint32max)).
MAX_MESSAGE_BYTES = 2**31 - 1
# A batched Predict larger than this (as sent or as decoded) is parsed, decoded and answered in
# a worker thread, not on the event loop, so that one huge request does not stall every other
# call while it is decoded.
LOOP_PREDICT_MAX_BYTES = 256 * 1024

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


def service_methods(core: ServerCore) -> dict[str, dict[str, tuple[type, Callable]]]:
    """Returns service -> method -> (request message class, the core's blocking call)."""
    return {
        PREDICTION_SERVICE: {
            "Predict": (predict_pb2.PredictRequest, core.predict),
            "Classify": (classification_pb2.ClassificationRequest, core.classify),
            "Regress": (regression_pb2.RegressionRequest, core.regress),
            "MultiInference": (inference_pb2.MultiInferenceRequest, core.multi_inference),
            "GetModelMetadata": (
                get_model_metadata_pb2.GetModelMetadataRequest,
                core.model_metadata,
            ),
        },
        MODEL_SERVICE: {
            "GetModelStatus": (get_model_status_pb2.GetModelStatusRequest, core.model_status),
            "HandleReloadConfigRequest": (
                model_management_pb2.ReloadConfigRequest,
                functools.partial(_reload_config, core),
            ),
        },
    }


def _reload_config(core: ServerCore, request) -> model_management_pb2.ReloadConfigResponse:
    try:
        core.reload_config(request.config)
    except Exception as exc:
        logger.error("Config reload failed: %s", from_exception(exc).message)
        raise
    return model_management_pb2.ReloadConfigResponse()


def parse_request(request_class: type, raw: bytes):
    """Returns `raw` parsed as `request_class`.

    Raises:
        ServingError: INTERNAL when the bytes are not such a message.
    """
    try:
        return request_class.FromString(raw)
    except Exception as exc:  # google.protobuf.message.DecodeError, and upb's own errors
        raise ServingError(
            "INTERNAL", f"Failed to parse the request as {request_class.DESCRIPTOR.full_name}"
        ) from exc


def failure_status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """Returns the gRPC status a failed call is answered with (unexpected errors are logged)."""
    status = from_exception(exc)
    if not isinstance(exc, ServingError):
        logger.error("Unexpected error while serving a request", exc_info=exc)
    return grpc.StatusCode[status.code], status.message


def serialize(message) -> bytes:
    return message.SerializeToString()


def _threaded_handler(request_class: type, call: Callable):
    def handle(raw: bytes, context: grpc.ServicerContext):
        try:
            return call(parse_request(request_class, raw))
        except Exception as exc:
            context.abort(*failure_status(exc))

    return grpc.unary_unary_rpc_method_handler(handle, response_serializer=serialize)


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """Returns gRPC server options from --grpc_channel_arguments ("k=v,k=v"; ints as ints).

    Raises:
        ValueError: an argument is not `key=value`.
    """
    arguments: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--grpc_channel_arguments: expected key=value, got {item!r}")
        try:
            arguments.append((key.strip(), int(value)))
        except ValueError:
            arguments.append((key.strip(), value))
    return arguments


class GrpcServer:
    """A started threaded gRPC server: its bound port, `stop` and `wait_for_termination`."""

    def __init__(self, server: grpc.Server, port: int):
        self._server = server
        self.port = port

    def stop(self, grace: float | None = None) -> None:
        """Stops taking calls; calls in flight get `grace` seconds to finish."""
        self._server.stop(grace).wait(timeout=(grace or 0) + 10)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Blocks until the server stops or `timeout` passes; returns whether it stopped."""
        return self._server.wait_for_termination(timeout)


def start_grpc_server(
    core: ServerCore,
    host: str,
    port: int,
    max_workers: int = 16,
    *,
    socket_path: str = "",
    channel_arguments: str = "",
    credentials: grpc.ServerCredentials | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_concurrent_streams: int = 0,
):
    """Returns the server (`port`, `stop`, `wait_for_termination`) with both services started
    on `host:port` (0 = any port): threaded, or on the event loop when the core batches.

    With `socket_path`, the server also listens on that Unix socket (TF Serving's
    --grpc_socket_path); `channel_arguments` are --grpc_channel_arguments. With `credentials`
    (--ssl_config_file) every address is served over TLS, as TF Serving does. A message larger
    than `max_message_bytes` is refused with RESOURCE_EXHAUSTED before it is parsed; with
    `max_concurrent_streams` > 0 a connection carries at most that many calls at once.
    `max_workers` threads run the calls' blocking work.

    Raises:
        OSError: an address cannot be bound.
        ValueError: `channel_arguments` do not parse.
    """
    options: dict[str, int | str] = {
        "grpc.max_receive_message_length": max_message_bytes,
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
        "grpc.so_reuseport": 0,
    }
    if max_concurrent_streams > 0:
        options["grpc.max_concurrent_streams"] = max_concurrent_streams
    options.update(parse_channel_arguments(channel_arguments))
    addresses = [f"{host}:{port}"] + ([f"unix:{socket_path}"] if socket_path else [])
    if core.batches_requests:
        from tfx_serving_ext.server.grpc_event_loop import start_event_loop_server

        return start_event_loop_server(
            core, list(options.items()), addresses, credentials, max_workers
        )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-serving"),
        options=list(options.items()),
    )
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(
                service,
                {name: _threaded_handler(*method) for name, method in methods.items()},
            )
            for service, methods in service_methods(core).items()
        )
    )
    bound = bind_addresses(server, addresses, credentials)
    server.start()
    return GrpcServer(server, bound)


def bind_addresses(server, addresses: list[str], credentials) -> int:
    """Returns the port bound for the first address, after binding every one of them.

    Raises:
        OSError: an address cannot be bound.
    """
    bound = 0
    for address in addresses:
        try:
            if credentials is None:
                result = server.add_insecure_port(address)
            else:
                result = server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise OSError(f"Cannot bind gRPC server to {address}: {exc}") from exc
        if result == 0:
            raise OSError(f"Cannot bind gRPC server to {address}")
        bound = bound or result
    return bound
