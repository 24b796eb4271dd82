"""A local stand-in for the Cloud Run Admin API (v2, REST) on 127.0.0.1.

Google's API cannot be reached from here, so the deployment tests point the real
`run_v2.ServicesClient` (REST transport, anonymous credentials) at this server. It implements
the calls the deployer makes — services get / create / patch and operations get — keeps the
service state the way Cloud Run reports it (`uri`, `latestReadyRevision`, `trafficStatuses`
with tag URLs), records every request, and can be told to fail a call or to leave an
operation running forever.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
_SERVICE_PATH = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+)/services(?:/([^/:]+))?$")
_OPERATION_PATH = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/operations/[^/]+)$")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    body: dict | None


@dataclass
class FakeRunApi:
    host: str = ""
    requests: list[RecordedRequest] = field(default_factory=list)
    services: dict[str, dict] = field(default_factory=dict)
    operations: dict[str, dict] = field(default_factory=dict)
    # (status code, google.rpc status name, message) returned by the next mutating call.
    fail_next: tuple[int, str, str] | None = None
    # When set, operations never complete (to exercise the deployer's timeout).
    never_finish: bool = False
    # When set, the next operation completes with this error (e.g. a failed startup probe).
    operation_error: dict | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}"

    def mutations(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method in ("POST", "PATCH")]

    def _public(self, name: str, spec: dict) -> dict:
        short = name.rsplit("/", 1)[-1]
        base = f"{short}-abc123-uc.a.run.app"
        service = dict(spec)
        service["name"] = name
        service["uri"] = f"https://{base}"
        revision = spec["template"]["revision"]
        location = name.split("/services/")[0]
        service["latestReadyRevision"] = f"{location}/revisions/{revision}"
        service["latestCreatedRevision"] = service["latestReadyRevision"]
        statuses = []
        for t in spec.get("traffic", []):
            status = {k: t[k] for k in ("type", "revision", "percent", "tag") if k in t}
            if t.get("tag"):
                status["uri"] = f"https://{t['tag']}---{base}"
            statuses.append(status)
        service["trafficStatuses"] = statuses
        return service

    def _operation(self, location: str, service: dict) -> dict:
        name = f"{location}/operations/op-{len(self.operations) + 1}"
        op = {"name": name, "done": False, "_result": service}
        if self.operation_error is not None:
            op["_error"], self.operation_error = self.operation_error, None
        self.operations[name] = op
        return {"name": name, "done": False}

    def handle(self, method: str, path: str, query: dict, body: dict | None):
        self.requests.append(RecordedRequest(method, path, query, body))
        if method in ("POST", "PATCH") and self.fail_next:
            code, status, message = self.fail_next
            self.fail_next = None
            return code, {"error": {"code": code, "status": status, "message": message}}
        if m := _OPERATION_PATH.match(path):
            op = self.operations.get(m.group(1))
            if op is None:
                return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "no op"}}
            if self.never_finish:
                return 200, {"name": op["name"], "done": False}
            if "_error" in op:
                return 200, {"name": op["name"], "done": True, "error": op["_error"]}
            # The service changes when its operation completes, as on Cloud Run.
            self.services[op["_result"]["name"]] = op["_result"]
            return 200, {
                "name": op["name"],
                "done": True,
                "response": {"@type": SERVICE_TYPE, **op["_result"]},
            }
        m = _SERVICE_PATH.match(path)
        if not m:
            return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": path}}
        location, short = m.group(1), m.group(2)
        if method == "GET":
            name = f"{location}/services/{short}"
            if name not in self.services:
                return 404, {
                    "error": {"code": 404, "status": "NOT_FOUND", "message": f"{name} not found"}
                }
            return 200, self.services[name]
        if method == "POST":
            name = f"{location}/services/{query['serviceId'][0]}"
            if name in self.services:
                return 409, {"error": {"code": 409, "status": "ALREADY_EXISTS", "message": name}}
            return 200, self._operation(location, self._public(name, body))
        if method == "PATCH":
            name = f"{location}/services/{short}"
            if name not in self.services:
                return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": name}}
            return 200, self._operation(location, self._public(name, body))
        return 405, {"error": {"code": 405, "status": "UNIMPLEMENTED", "message": method}}


def start_fake_run_api() -> tuple[FakeRunApi, ThreadingHTTPServer]:
    """Starts the stand-in on 127.0.0.1 (a free port) in a thread; returns (state, server)."""
    api = FakeRunApi()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            with lock:
                code, answer = api.handle(self.command, url.path, parse_qs(url.query), body)
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.host = f"127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return api, server
