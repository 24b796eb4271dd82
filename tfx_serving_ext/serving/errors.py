"""Errors raised by the serving client when talking to any TF Serving (embedded or real)."""

from __future__ import annotations


class ServingError(Exception):
    """TF Serving answered with an error: `.code` is the gRPC status name, `.message` its text."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


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
