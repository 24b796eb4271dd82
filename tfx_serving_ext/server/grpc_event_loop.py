"""The gRPC front end of a batching server: a `grpc.aio` server on an event loop thread.

Every call is a coroutine on one event loop, shared by all such servers of the process (gRPC's
asyncio stack polls one completion queue, which several loops would contend for). A batched
Predict of up to `LOOP_PREDICT_MAX_BYTES` (as sent and as decoded) is parsed, checked, decoded
and answered on the loop and awaits its batch (`ServerCore.predict_async`); every other call,
and a larger Predict, is parsed and run in one of `max_workers` threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent import futures

import grpc

from tfx_serving_ext.protocol import tensors
from tfx_serving_ext.protocol.errors import ServingError
from tfx_serving_ext.server.core import ServerCore
from tfx_serving_ext.server.grpc_service import (
    LOOP_PREDICT_MAX_BYTES,
    PREDICTION_SERVICE,
    bind_addresses,
    failure_status,
    parse_request,
    serialize,
    service_methods,
)

logger = logging.getLogger(__name__)


class _SharedLoop:
    """The event loop thread the batching gRPC servers of the process run on."""

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


class EventLoopServer:
    """A started grpc.aio server: its bound port, `stop` and `wait_for_termination`."""

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
        except futures.TimeoutError:
            logger.warning("The gRPC server did not stop within %s s; going on", (grace or 0) + 10)
        finally:
            self._workers.shutdown(wait=False, cancel_futures=True)
            self._stopped.set()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Blocks until the server stops or `timeout` passes; returns whether it stopped."""
        return self._stopped.wait(timeout)


def start_event_loop_server(
    core: ServerCore, options: list, addresses: list[str], credentials, max_workers: int
) -> EventLoopServer:
    """Returns the started server (see `grpc_service.start_grpc_server`).

    Raises:
        OSError: an address cannot be bound.
    """
    workers = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-serving")
    loop = _SharedLoop.get()
    started = asyncio.run_coroutine_threadsafe(
        _start(core, workers, options, addresses, credentials), loop
    )
    try:
        server, bound = started.result(timeout=60)
    except BaseException:
        workers.shutdown(wait=False)
        raise
    return EventLoopServer(server, bound, loop, workers)


async def _start(core, workers, options, addresses, credentials):
    """Returns (grpc.aio server, first bound port), started on the running loop."""
    server = grpc.aio.server(options=options)
    handlers = []
    for service, methods in service_methods(core).items():
        table = {}
        for name, (request_class, call) in methods.items():
            on_loop = (
                core.predict_async if (service, name) == (PREDICTION_SERVICE, "Predict") else None
            )
            table[name] = _handler(request_class, call, workers, on_loop)
        handlers.append(grpc.method_handlers_generic_handler(service, table))
    server.add_generic_rpc_handlers(tuple(handlers))
    try:
        bound = bind_addresses(server, addresses, credentials)
    except OSError:
        await server.stop(None)
        raise
    await server.start()
    return server, bound


def _handler(request_class: type, call: Callable, workers, on_loop: Callable | None):
    """Returns a handler running `call` in a worker thread (the request parsed there too), or,
    for a request that parses and decodes to at most LOOP_PREDICT_MAX_BYTES, awaiting
    `on_loop(request)` on the loop."""

    async def handle(raw: bytes, context):
        loop = asyncio.get_running_loop()
        try:
            if on_loop is not None and len(raw) <= LOOP_PREDICT_MAX_BYTES:
                request = parse_request(request_class, raw)
                if _decodes_small(request):
                    return await on_loop(request)
                return await loop.run_in_executor(workers, call, request)
            return await loop.run_in_executor(workers, _parse_and_call, request_class, call, raw)
        except Exception as exc:
            code, message = failure_status(exc)
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(handle, response_serializer=serialize)


def _parse_and_call(request_class: type, call: Callable, raw: bytes):
    return call(parse_request(request_class, raw))


def _decodes_small(request) -> bool:
    """Whether a PredictRequest's inputs decode to at most LOOP_PREDICT_MAX_BYTES (a few bytes
    can ask for much more: one value filling a large shape)."""
    try:
        decoded = sum(tensors.tensor_proto_bytes(p)[1] for p in request.inputs.values())
    except ServingError:
        return True  # refused on the loop by the request checks, before anything is decoded
    return decoded <= LOOP_PREDICT_MAX_BYTES
