"""The error type every part of the server raises: a TF Serving status code and message."""

from __future__ import annotations

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


class ServingStatusError(Exception):
    """A request or load failed with a TF Serving status code (gRPC code name) and message."""

    def __init__(self, code: str, message: str):
        if code not in CODE_NUMBERS:
            raise ValueError(f"unknown status code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """Returns the HTTP status TF Serving's REST API answers this error with."""
        return HTTP_STATUS_BY_CODE.get(self.code, 500)


def invalid_argument(message: str) -> ServingStatusError:
    """Returns an INVALID_ARGUMENT error with `message`."""
    return ServingStatusError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingStatusError:
    """Returns a NOT_FOUND error with `message`."""
    return ServingStatusError("NOT_FOUND", message)


def from_exception(exc: BaseException) -> ServingStatusError:
    """Returns the status TF Serving reports for an exception raised while running a model.

    TensorFlow's OpErrors carry their own code; argument-binding errors from a concrete function
    (wrong input shape or dtype) are INVALID_ARGUMENT; anything else is INTERNAL.
    """
    if isinstance(exc, ServingStatusError):
        return exc
    error_code = getattr(exc, "error_code", None)
    if isinstance(error_code, int):
        name = next((n for n, v in CODE_NUMBERS.items() if v == error_code), "UNKNOWN")
        message = getattr(exc, "message", None) or str(exc)
        return ServingStatusError(name, message)
    if isinstance(exc, (TypeError, ValueError)):
        return invalid_argument(str(exc))
    return ServingStatusError("INTERNAL", f"{type(exc).__name__}: {exc}")
