"""TF Serving's status codes and the one error hierarchy of the package.

`ServingError` is a TF Serving status (gRPC code name + message): the embedded server raises it,
the client raises it for what any server (embedded or real) answered, and the offline model
runner raises it where TF Serving would refuse the same request. Its subclasses say what a caller
may want to handle on its own: no server answered, a deadline passed, a version failed to load.
"""

from __future__ import annotations

import re

# gRPC status code name -> HTTP status, as TF Serving's REST handler maps them.
HTTP_STATUS_BY_CODE = {
    "OK": 200,
    "CANCELLED": 499,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

# tensorflow.error.Code numbers (used in StatusProto.error_code and GetModelStatus).
CODE_NUMBERS = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


# gRPC sends a status message in a header that clients cap (8 KiB by default): longer ones are cut.
MAX_MESSAGE_CHARS = 4096


def wire_safe(message: str) -> str:
    """Returns `message` as text every gRPC and REST client can decode, at most MAX_MESSAGE_CHARS.

    Lone surrogates (bytes that were not UTF-8, decoded with surrogateescape) become `\\udcXX`
    escapes instead of failing the client's UTF-8 decoding.
    """
    message = str(message)
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return message


_STACK_FRAME = re.compile(r'^\s*File "[^"]*", line \d+')
_STACK_HEADER = re.compile(r"\s*(?:defined at )?\(most recent call last\):?\s*$")
_SERVER_FILE = re.compile(r"(?:/[\w.@+-]+)+\.(?:py|pyc|so|cc|h)\b")


def client_message(message: str, *private_paths: str) -> str:
    """Returns a model error's message without the server's stack, source files or `private_paths`.

    TensorFlow op errors carry the Python stack that built the op ("Detected at node add
    defined at (most recent call last): File ...") and Python errors a traceback; a client gets
    the rest of the message, and the server's log keeps the whole.
    """
    lines: list[str] = []
    skip_code_line = False
    for line in str(message).splitlines():
        if _STACK_FRAME.match(line):
            skip_code_line = True
            continue
        if skip_code_line and line.startswith("    "):
            continue
        skip_code_line = False
        if line.strip() == "Traceback (most recent call last):":
            continue
        line = _STACK_HEADER.sub("", line)
        if line.strip() or (lines and lines[-1].strip()):
            lines.append(line)
    text = "\n".join(lines).strip()
    for path in private_paths:
        if path:
            text = text.replace(path, "<model>")
    text = _SERVER_FILE.sub("<server file>", text)
    return text or "the model failed on this request (details are in the server log)"


class ServingError(Exception):
    """A request or load failed with a TF Serving status: `.code` (gRPC code name), `.message`."""

    def __init__(self, code: str, message: str):
        if code not in CODE_NUMBERS:
            raise ValueError(f"unknown status code {code!r}")
        message = wire_safe(message)
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """Returns the HTTP status TF Serving's REST API answers this error with."""
        return HTTP_STATUS_BY_CODE.get(self.code, 500)


class ServerUnreachable(ServingError):
    """No server answers at the address (connection refused, DNS failure, closed socket)."""

    def __init__(self, message: str):
        super().__init__("UNAVAILABLE", message)


class ServingTimeout(ServingError):
    """The server did not answer, or a version did not become AVAILABLE, in time."""

    def __init__(self, message: str):
        super().__init__("DEADLINE_EXCEEDED", message)


class VersionLoadFailed(ServingError):
    """The version reached state END instead of AVAILABLE; `.message` is the server's error."""

    def __init__(self, model_name: str, version: int, code: str, message: str):
        super().__init__(code, message)
        self.model_name = model_name
        self.version = version

    def __str__(self) -> str:
        return (
            f"Version {self.version} of model {self.model_name} failed to load ({self.code}): "
            f"{self.message}"
        )


def invalid_argument(message: str) -> ServingError:
    """Returns an INVALID_ARGUMENT error with `message`."""
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    """Returns a NOT_FOUND error with `message`."""
    return ServingError("NOT_FOUND", message)


def from_exception(exc: BaseException) -> ServingError:
    """Returns the status TF Serving reports for an exception raised while running a model.

    TensorFlow's OpErrors carry their own code; argument-binding errors from a concrete function
    (wrong input shape or dtype) are INVALID_ARGUMENT; anything else is INTERNAL.
    """
    if isinstance(exc, ServingError):
        return exc
    error_code = getattr(exc, "error_code", None)
    if isinstance(error_code, int):
        name = next((n for n, v in CODE_NUMBERS.items() if v == error_code), "UNKNOWN")
        message = getattr(exc, "message", None) or str(exc)
        return ServingError(name, message)
    if isinstance(exc, (TypeError, ValueError)):
        return invalid_argument(str(exc))
    return ServingError("INTERNAL", f"{type(exc).__name__}: {exc}")
