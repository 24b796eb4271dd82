"""The REST front end (aiohttp, in its own thread and event loop): TF Serving's /v1 routes."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from concurrent import futures

from aiohttp import web
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    regression_pb2,
)

from tfx_serving_ext.protocol import rest_examples, rest_json, rest_predict
from tfx_serving_ext.protocol.errors import ServingError, from_exception, invalid_argument
from tfx_serving_ext.server.core import ServerCore
from tfx_serving_ext.server.servable import DEFAULT_SIGNATURE

logger = logging.getLogger(__name__)

_PREDICTION_ROUTE = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_MODEL_ROUTE = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)


def _json_response(body: dict, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode("utf-8"), status=status, content_type="application/json"
    )


def _error_response(error: ServingError) -> web.Response:
    return _json_response(rest_json.error_to_json(error), error.http_status)


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
        max_body_bytes: int = 256 * 1024 * 1024,
        max_workers: int = 16,
    ):
        self._core = core
        self._host = host
        self._requested_port = port
        self._timeout = timeout_seconds
        self._max_body_bytes = max_body_bytes
        self._pool = futures.ThreadPoolExecutor(max_workers, thread_name_prefix="rest-serving")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
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
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    async def _setup(self, ready: futures.Future) -> None:
        app = web.Application(client_max_size=self._max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._requested_port, reuse_port=False)
        await site.start()
        port = self._runner.addresses[0][1]
        ready.set_result(port)

    def stop(self) -> None:
        """Stops accepting connections and waits for the server thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- request handling -------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        try:
            if not path.startswith("/v1/"):
                return web.Response(status=404, text="Not Found")
            return await self._dispatch(request, path)
        except ServingError as exc:
            return _error_response(exc)
        except web.HTTPRequestEntityTooLarge as exc:
            return _json_response(
                {
                    "error": f"Request body exceeds the maximum of {self._max_body_bytes} bytes "
                    f"({exc.text})"
                },
                413,
            )
        except Exception as exc:  # never let a request take the server down
            logger.exception("Unexpected error serving %s %s", request.method, path)
            return _error_response(from_exception(exc))

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
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise invalid_argument(f"JSON Parse error: {exc}") from None
        if not isinstance(body, dict):
            raise invalid_argument("JSON Parse error: the request body must be a JSON object")
        return body

    async def _run_blocking(self, handler, *args) -> web.Response:
        loop = asyncio.get_running_loop()
        try:
            result = await asyncio.wait_for(
                loop.run_in_executor(self._pool, handler, *args), self._timeout
            )
        except TimeoutError:
            raise ServingError(
                "DEADLINE_EXCEEDED",
                f"Request did not finish within --rest_api_timeout_in_ms "
                f"({int(self._timeout * 1000)} ms)",
            ) from None
        return _json_response(result)

    def _predict(self, name: str, version: str | None, label: str | None, body: dict) -> dict:
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
        response = servable.predict(predict_request)
        return rest_predict.predict_response_to_json(response, row_format)

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
        signature_name, model_input = rest_examples.input_from_json(body)
        request = request_type(input=model_input)
        request.model_spec.name = name
        request.model_spec.signature_name = signature_name
        _set_version(request.model_spec, version, label)
        return result_to_json(run(request).result)

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
