"""The REST front end (aiohttp, in its own thread and event loop): TF Serving's /v1 routes.

Every request is bounded before the server spends on it: the connection count, the time to send
headers and body, the body's size after decompression, and the JSON's nesting (parsed off the
event loop, so one large body never stalls the other clients).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from concurrent import futures

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    regression_pb2,
)

from tfx_serving_ext.protocol import rest_examples, rest_json, rest_predict
from tfx_serving_ext.protocol.errors import ServingError, invalid_argument
from tfx_serving_ext.server.core import ServerCore
from tfx_serving_ext.server.rest_connections import ConnectionGuard
from tfx_serving_ext.server.servable import DEFAULT_SIGNATURE

logger = logging.getLogger(__name__)

_PREDICTION_ROUTE = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_MODEL_ROUTE = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)


def _json_response(body: dict | bytes, status: int = 200, close: bool = False) -> web.Response:
    # A request that was refused before its body was read leaves the body on the connection.
    headers = {"Connection": "close"} if close else None
    return web.Response(
        body=body if isinstance(body, bytes) else json.dumps(body).encode("utf-8"),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error_response(error: ServingError) -> web.Response:
    return _json_response(rest_json.error_to_json(error), error.http_status)


def _too_large(max_body_bytes: int, what: str) -> web.Response:
    return _json_response(
        {"error": f"Request body {what} exceeds the maximum of {max_body_bytes} bytes"},
        413,
        close=True,
    )


def _set_version(model_spec, version: str | None, label: str | None) -> None:
    if version is not None:
        model_spec.version.value = int(version)
    elif label is not None:
        model_spec.version_label = label


class RestServer:
    """Serves TF Serving's REST API over a ServerCore on host:port (0 = any free port)."""

    def __init__(
        self,
        core: ServerCore,
        host: str,
        port: int,
        timeout_seconds: float = 30.0,
        max_body_bytes: int = 64 * 1024 * 1024,
        max_workers: int = 16,
        *,
        max_connections: int = 512,
        header_timeout_seconds: float = 10.0,
        body_timeout_seconds: float = 30.0,
        keepalive_timeout_seconds: float = 30.0,
        max_json_parsers: int = 2,
        metrics_path: str = "",
    ):
        """Creates the server; `start()` binds it.

        Args:
            core: the ServerCore answering the requests.
            host: address to bind.
            port: port to bind (0 = any free port).
            timeout_seconds: --rest_api_timeout_in_ms, for running a request.
            max_body_bytes: largest body (after gzip/deflate decompression); larger is 413.
            max_workers: threads running requests on the models.
            max_connections: open connections at once; more are answered 503 and closed, so
                idle clients cannot take every file descriptor of the process.
            header_timeout_seconds: time a connection has to send a request's headers.
            body_timeout_seconds: time a request has to send its body (408 after).
            keepalive_timeout_seconds: idle time after which a kept-alive connection closes.
            max_json_parsers: bodies parsed at once (each costs several times its size).
            metrics_path: where GET answers the core's metrics as Prometheus text
                (--monitoring_config_file's prometheus_config.path); "" = nowhere (404).
        """
        self._core = core
        self._metrics_path = metrics_path
        self._host = host
        self._requested_port = port
        self._timeout = timeout_seconds
        self._max_body_bytes = max_body_bytes
        self._body_timeout = body_timeout_seconds
        self._keepalive_timeout = keepalive_timeout_seconds
        self._pool = futures.ThreadPoolExecutor(max_workers, thread_name_prefix="rest-serving")
        self._parsers = futures.ThreadPoolExecutor(max_json_parsers, thread_name_prefix="rest-json")
        self._guard = ConnectionGuard(
            max_connections, header_timeout_seconds, keepalive_timeout_seconds
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> int:
        """Returns the bound port once the server accepts connections.

        Raises:
            OSError: the address cannot be bound.
        """
        ready: futures.Future = futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="rest-server", daemon=True
        )
        self._thread.start()
        self.port = ready.result(timeout=60)
        return self.port

    def _run(self, ready: futures.Future) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup(ready))
        except Exception as exc:
            ready.set_exception(OSError(f"Cannot start REST server on {self._host}: {exc}"))
            loop.close()
            return
        loop.run_forever()
        loop.run_until_complete(self._cleanup())
        loop.close()

    async def _cleanup(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await self._runner.cleanup()

    async def _setup(self, ready: futures.Future) -> None:
        app = web.Application(client_max_size=self._max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self._keepalive_timeout,
        )
        await self._runner.setup()
        # Our own listener instead of a TCPSite: each connection goes through the guard.
        server = self._runner.server
        self._listener = await asyncio.get_running_loop().create_server(
            lambda: self._guard.protocol(server()),
            self._host,
            self._requested_port,
            reuse_port=False,
        )
        ready.set_result(self._listener.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Stops accepting connections and waits for the server thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._parsers.shutdown(wait=False, cancel_futures=True)

    # ---- request handling -------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        self._guard.request_started(request.transport)
        try:
            if self._metrics_path and path == self._metrics_path:
                # As TF Serving's exporter: any method, the page as text/plain.
                return web.Response(
                    text=self._core.metrics.render(), content_type="text/plain", charset="utf-8"
                )
            if not path.startswith("/v1/"):
                return web.Response(status=404, text="Not Found")
            return await self._dispatch(request, path)
        except ServingError as exc:
            return _error_response(exc)
        except web.HTTPRequestEntityTooLarge:
            return _too_large(self._max_body_bytes, "(after decompression)")
        except web.HTTPRequestTimeout:
            message = f"Request body not received within {self._body_timeout:g} s"
            return _json_response({"error": message}, 408, close=True)
        except Exception:  # never let a request take the server down, nor show it its stack
            logger.exception("Unexpected error serving %s %s", request.method, path)
            return _error_response(
                ServingError("INTERNAL", "Internal error serving the request (see the server log)")
            )
        finally:
            self._guard.request_finished(request.transport)

    def _malformed(self, request: web.Request) -> ServingError:
        return invalid_argument(f"Malformed request: {request.method} {request.path_qs}")

    async def _dispatch(self, request: web.Request, path: str) -> web.Response:
        match = _PREDICTION_ROUTE.fullmatch(path)
        if match and request.method == "POST":
            name, version, label, verb = match.groups()
            body = await self._read_json(request)
            verb = verb.lower()
            if verb == "predict":
                return await self._run_blocking(self._predict, name, version, label, body)
            return await self._run_blocking(self._examples, verb, name, version, label, body)
        match = _MODEL_ROUTE.fullmatch(path)
        if match and request.method == "GET":
            name, version, label, metadata = match.groups()
            if not name:
                raise self._malformed(request)
            handler = self._metadata if metadata else self._status
            return await self._run_blocking(handler, name, version, label)
        raise self._malformed(request)

    async def _read_json(self, request: web.Request):
        length = request.content_length
        if length is not None and length > self._max_body_bytes:
            # Refused before a byte of it is read: Content-Length alone can ask for anything.
            raise web.HTTPRequestEntityTooLarge(self._max_body_bytes, length)
        try:
            raw = await asyncio.wait_for(request.read(), self._body_timeout)
        except TimeoutError:
            raise web.HTTPRequestTimeout() from None
        except (HttpProcessingError, RequestPayloadError) as exc:
            # A corrupt gzip/deflate body, or one cut short: the client's fault.
            cause = exc.__cause__ or exc
            raise invalid_argument(f"Cannot read the request body: {cause}") from None
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(self._parsers, rest_json.parse_body, raw)
        del raw
        if not isinstance(body, dict):
            raise invalid_argument("JSON Parse error: the request body must be a JSON object")
        return body

    async def _run_blocking(self, handler, *args) -> web.Response:
        loop = asyncio.get_running_loop()

        def answer() -> bytes:
            # Encoded in the worker too: a large answer must not hold the event loop.
            return rest_json.dump_body(handler(*args))

        try:
            result = await asyncio.wait_for(loop.run_in_executor(self._pool, answer), self._timeout)
        except TimeoutError:
            raise ServingError(
                "DEADLINE_EXCEEDED",
                f"Request did not finish within --rest_api_timeout_in_ms "
                f"({int(self._timeout * 1000)} ms)",
            ) from None
        return _json_response(result)

    def _predict(self, name: str, version: str | None, label: str | None, body: dict) -> dict:
        with self._core.metrics.observe_request(name, "predict", "REST"):
            return self._predict_observed(name, version, label, body)

    def _predict_observed(self, name, version, label, body: dict) -> dict:
        signature_name = body.get("signature_name", DEFAULT_SIGNATURE) or DEFAULT_SIGNATURE
        if not isinstance(signature_name, str):
            raise invalid_argument('"signature_name" must be a string')
        spec = model_pb2.ModelSpec()
        spec.name = name
        _set_version(spec, version, label)
        servable = self._core.servable_for(spec)
        signature = servable.signature_defs.get(signature_name)
        if signature is None or signature_name == "__saved_model_init_op":
            raise ServingError(
                "FAILED_PRECONDITION", f'Serving signature key "{signature_name}" not found.'
            )
        predict_request, row_format = rest_predict.predict_request_from_json(
            body, signature_name, signature
        )
        predict_request.model_spec.CopyFrom(spec)
        predict_request.model_spec.signature_name = signature_name
        arrays = self._core.run_model(
            servable.name, "Predict", servable.predict_arrays, predict_request
        )
        return rest_predict.predict_arrays_to_json(arrays, row_format)

    def _examples(self, verb: str, name, version, label, body: dict) -> dict:
        # The body decodes to the Input a gRPC Classify/Regress request carries, and runs
        # through the same core call.
        request_type, run, result_to_json = {
            "classify": (
                classification_pb2.ClassificationRequest,
                self._core.classify,
                rest_examples.classification_to_json,
            ),
            "regress": (
                regression_pb2.RegressionRequest,
                self._core.regress,
                rest_examples.regression_to_json,
            ),
        }[verb]
        request = request_type()
        request.model_spec.name = name
        _set_version(request.model_spec, version, label)
        try:
            signature_name, model_input = rest_examples.input_from_json(body)
        except ServingError as exc:
            # A body that does not decode is still a request to this model: counted, as run's are.
            self._core.metrics.record_request(name, verb, "REST", exc.code, 0.0)
            raise
        request.input.CopyFrom(model_input)
        request.model_spec.signature_name = signature_name
        return result_to_json(run(request, entrypoint="REST").result)

    def _status(self, name, version, label) -> dict:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        _set_version(request.model_spec, version, label)
        return rest_json.status_to_json(self._core.model_status(request))

    def _metadata(self, name, version, label) -> dict:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = name
        _set_version(request.model_spec, version, label)
        return rest_json.metadata_to_json(self._core.model_metadata(request))
