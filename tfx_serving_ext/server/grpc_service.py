"""The gRPC front end: tensorflow.serving PredictionService and ModelService."""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from tfx_serving_ext.protocol.errors import CODE_NUMBERS, ServingError, from_exception
from tfx_serving_ext.server.core import ServerCore

logger = logging.getLogger(__name__)

# TF Serving accepts messages up to INT_MAX bytes (ServerBuilder::SetMaxMessageSize(kint32max)).
MAX_MESSAGE_BYTES = 2**31 - 1


def _serve(context: grpc.ServicerContext, call, request):
    try:
        return call(request)
    except Exception as exc:
        status = from_exception(exc)
        if not isinstance(exc, ServingError):
            logger.exception("Unexpected error while serving a request")
        context.abort(grpc.StatusCode[status.code], status.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService over a ServerCore."""

    def __init__(self, core: ServerCore):
        self._core = core

    def Predict(self, request, context):  # noqa: N802 (gRPC method names)
        return _serve(context, self._core.predict, request)

    def Classify(self, request, context):  # noqa: N802
        return _serve(context, self._core.classify, request)

    def Regress(self, request, context):  # noqa: N802
        return _serve(context, self._core.regress, request)

    def MultiInference(self, request, context):  # noqa: N802
        return _serve(context, self._core.multi_inference, request)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _serve(context, self._core.model_metadata, request)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService (status and config reload) over a ServerCore."""

    def __init__(self, core: ServerCore):
        self._core = core

    def GetModelStatus(self, request, context):  # noqa: N802
        return _serve(context, self._core.model_status, request)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        response = model_management_pb2.ReloadConfigResponse()
        try:
            self._core.reload_config(request.config)
        except Exception as exc:
            status = from_exception(exc)
            logger.error("Config reload failed: %s", status.message)
            response.status.error_code = CODE_NUMBERS[status.code]
            response.status.error_message = status.message
            context.abort(grpc.StatusCode[status.code], status.message)
        return response


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
    """Returns (server, bound port) with both services started on `host:port` (0 = any port).

    With `socket_path`, the server also listens on that Unix socket (TF Serving's
    --grpc_socket_path); `channel_arguments` are --grpc_channel_arguments. With `credentials`
    (--ssl_config_file) every address is served over TLS, as TF Serving does. A message larger
    than `max_message_bytes` is refused with RESOURCE_EXHAUSTED before it is parsed; with
    `max_concurrent_streams` > 0 a connection carries at most that many calls at once.

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
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-serving"),
        options=list(options.items()),
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(core), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core), server)
    addresses = [f"{host}:{port}"] + ([f"unix:{socket_path}"] if socket_path else [])
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
    server.start()
    return server, bound
