"""Returns which versions of a model the server reports AVAILABLE, and waits for one on top.

Both take a ServingClient (or anything with its `model_status`), so a push and a rollback ask
the server the same question the same way.
"""

from __future__ import annotations

import time
from typing import Any

# States in which a version is, or may yet become, AVAILABLE.
_MAY_SERVE = ("START", "LOADING", "AVAILABLE")


def served_versions(client: Any, model_name: str) -> set[int]:
    """Returns the versions the server reports AVAILABLE (none if it does not know the model).

    Raises:
        ServingError: the server cannot be asked (other than NOT_FOUND for the model).
    """
    return {version for version, state in _states(client, model_name) if state == "AVAILABLE"}


def _states(client: Any, model_name: str) -> list[tuple[int, str]]:
    from tfx_serving_ext.protocol.errors import ServingError

    try:
        statuses = client.model_status(model_name)
    except ServingError as exc:
        if exc.code != "NOT_FOUND":
            raise
        return []
    return [(s.version, s.state) for s in statuses]


def wait_until_served(client: Any, model_name: str, version: int, timeout: float) -> None:
    """Returns once `version` is the newest version the server serves or may still serve.

    That is: `version` is the newest AVAILABLE one, and no newer version is still starting or
    loading (a rolled-back version whose load began before it was removed would otherwise
    become AVAILABLE after this returned). Unlike ServingClient.wait_until_available this
    tolerates END: after a rollback the target version is usually in END (unloaded when the newer
    one arrived) until the server reloads it.

    A server that answers with an error (unreachable, a failed status request) is asked again
    until the deadline: a replica restarting after a rollback is not a failure yet.

    Raises:
        ServingTimeout: it did not happen within `timeout` seconds (says the last error seen).
    """
    from tfx_serving_ext.protocol.errors import ServingError, ServingTimeout

    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    newer: list[int] = []
    error: ServingError | None = None
    while True:
        try:
            states, error = _states(client, model_name), None
        except ServingError as exc:
            states, error = [], exc
        seen = {v for v, state in states if state == "AVAILABLE"}
        newer = sorted(v for v, state in states if v > version and state in _MAY_SERVE)
        if seen and max(seen) == version and not newer:
            return
        if time.monotonic() >= deadline:
            raise ServingTimeout(
                f"version {version} of {model_name} is not the newest AVAILABLE version after "
                f"{timeout:g}s (AVAILABLE: {sorted(seen)}; newer, still loading: {newer})"
                + (f"; last error: {error}" if error is not None else "")
            )
        time.sleep(0.1)
