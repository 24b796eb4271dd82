"""The gRPC front end: tensorflow.serving PredictionService and ModelService.

The server is a `grpc.aio` server: calls are coroutines on one event loop, shared by every
gRPC server of the process (gRPC's asyncio stack polls one completion queue, which several
loops would contend for). Work that blocks (a model run, a status read, a config reload) runs
in a pool of `max_workers` threads, TF Serving's --grpc_max_threads. With server-side batching,
a Predict waits for its batch on the loop instead of in a thread, so that the requests a batch
gathers do not each hold (and wake) a thread of their own: that is what lets batching pay off
in Python, where a thread handoff costs as much as the model's work on a small request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
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

from tfx_serving_ext.protocol.errors import CODE_NUMBERS, ServingError, from_exception
from tfx_serving_ext.server.core import ServerCore

logger = logging.getLogger(__name__)

# TF Serving accepts messages up to INT_MAX bytes (ServerBuilder::SetMaxMessageSize(kint32max)).
MAX_MESSAGE_BYTES = 2**31 - 1
# A batched Predict larger than this is decoded and answered in a worker thread, not on the
# loop, so that one huge request does not stall every other call while it is decoded.
LOOP_PREDICT_MAX_BYTES = 256 * 1024


async def _abort(context, exc: Exception) -> None:
    status = from_exception(exc)
    if not isinstance(exc, ServingError):
        logger.error("Unexpected error while serving a request", exc_info=exc)
    await context.abort(grpc.StatusCode[status.code], status.message)


class _Handlers:
    """Runs the core's blocking calls in the worker threads and tells failures as statuses."""

    def __init__(self, core: ServerCore, workers: futures.ThreadPoolExecutor):
        self._core = core
        self._workers = workers

    async def _in_worker(self, context, call, request):
        try:
            return await asyncio.get_running_loop().run_in_executor(self._workers, call, request)
        except Exception as exc:
            await _abort(context, exc)


class PredictionServicer(_Handlers):
    """tensorflow.serving.PredictionService over a ServerCore."""

    async def Predict(self, request, context):  # noqa: N802 (gRPC method names)
        core = self._core
        if not core.batches_requests or request.ByteSize() > LOOP_PREDICT_MAX_BYTES:
            return await self._in_worker(context, core.predict, request)
        try:
            return await core.predict_async(request)
        except Exception as exc:
            await _abort(context, exc)

    async def Classify(self, request, context):  # noqa: N802
        return await self._in_worker(context, self._core.classify, request)

    async def Regress(self, request, context):  # noqa: N802
        return await self._in_worker(context, self._core.regress, request)

    async def MultiInference(self, request, context):  # noqa: N802
        return await self._in_worker(context, self._core.multi_inference, request)

    async def GetModelMetadata(self, request, context):  # noqa: N802
        return await self._in_worker(context, self._core.model_metadata, request)


class ModelServicer(_Handlers):
    """tensorflow.serving.ModelService (status and config reload) over a ServerCore."""

    async def GetModelStatus(self, request, context):  # noqa: N802
        return await self._in_worker(context, self._core.model_status, request)

    async def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        response = model_management_pb2.ReloadConfigResponse()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._workers, self._core.reload_config, request.config)
        except Exception as exc:
            status = from_exception(exc)
            logger.error("Config reload failed: %s", status.message)
            response.status.error_code = CODE_NUMBERS[status.code]
            response.status.error_message = status.message
            await context.abort(grpc.StatusCode[status.code], status.message)
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


class _SharedLoop:
    """The event loop thread every gRPC server of the process runs on (started when needed)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="grpc-serving-loop", daemon=True
                )
                thread.start()
                cls._loop = loop
            return cls._loop


class GrpcServer:
    """A started gRPC server: its bound port, `stop` and `wait_for_termination`."""

    def __init__(self, server, port: int, loop, workers: futures.ThreadPoolExecutor):
        self._server = server
        self.port = port
        self._loop = loop
        self._workers = workers
        self._stopped = threading.Event()

    def stop(self, grace: float | None = None) -> None:
        """Stops taking calls; calls in flight get `grace` seconds to finish."""
        if self._stopped.is_set():
            return
        done = asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop)
        try:
            done.result(timeout=(grace or 0) + 10)
        finally:
            self._workers.shutdown(wait=False, cancel_futures=True)
            self._stopped.set()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Blocks until the server stops or `timeout` passes; returns whether it stopped."""
        return self._stopped.wait(timeout)


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
) -> GrpcServer:
    """Returns the server with both services started on `host:port` (0 = any port).

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
    workers = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-serving")
    loop = _SharedLoop.get()
    started = asyncio.run_coroutine_threadsafe(
        _start(core, workers, list(options.items()), addresses, credentials), loop
    )
    try:
        server, bound = started.result(timeout=60)
    except BaseException:
        workers.shutdown(wait=False)
        raise
    return GrpcServer(server, bound, loop, workers)


async def _start(core, workers, options, addresses, credentials):
    """Returns (grpc.aio server, first bound port), started on the running loop."""
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers(_services(core, workers))
    bound = 0
    for address in addresses:
        try:
            if credentials is None:
                result = server.add_insecure_port(address)
            else:
                result = server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            await server.stop(None)
            raise OSError(f"Cannot bind gRPC server to {address}: {exc}") from exc
        if result == 0:
            await server.stop(None)
            raise OSError(f"Cannot bind gRPC server to {address}")
        bound = bound or result
    await server.start()
    return server, bound


def _services(core: ServerCore, workers: futures.ThreadPoolExecutor) -> tuple:
    """Returns the generic handlers of both services, each parsing its own requests."""
    prediction, model = PredictionServicer(core, workers), ModelServicer(core, workers)
    return (
        grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService",
            {
                "Predict": _parsing(predict_pb2.PredictRequest, prediction.Predict),
                "Classify": _parsing(classification_pb2.ClassificationRequest, prediction.Classify),
                "Regress": _parsing(regression_pb2.RegressionRequest, prediction.Regress),
                "MultiInference": _parsing(
                    inference_pb2.MultiInferenceRequest, prediction.MultiInference
                ),
                "GetModelMetadata": _parsing(
                    get_model_metadata_pb2.GetModelMetadataRequest, prediction.GetModelMetadata
                ),
            },
        ),
        grpc.method_handlers_generic_handler(
            "tensorflow.serving.ModelService",
            {
                "GetModelStatus": _parsing(
                    get_model_status_pb2.GetModelStatusRequest, model.GetModelStatus
                ),
                "HandleReloadConfigRequest": _parsing(
                    model_management_pb2.ReloadConfigRequest, model.HandleReloadConfigRequest
                ),
            },
        ),
    )


def _parsing(request_class, behavior):
    """Returns a unary handler that parses its request itself: bytes that are not a
    `request_class` get INTERNAL, as from TF Serving's C++ gRPC, not asyncio gRPC's UNKNOWN."""

    async def handle(raw: bytes, context):
        try:
            request = request_class.FromString(raw)
        except Exception:  # google.protobuf.message.DecodeError, and upb's own errors
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"Failed to parse the request as {request_class.DESCRIPTOR.full_name}",
            )
        return await behavior(request, context)

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=None, response_serializer=_serialize
    )


def _serialize(message) -> bytes:
    return message.SerializeToString()
