"""Returns which versions of a model the server reports AVAILABLE, and waits for one on top.

Both take a ServingClient (or anything with its `model_status`), so a push and a rollback ask
the server the same question the same way.
"""

from __future__ import annotations

import time
from typing import Any


def served_versions(client: Any, model_name: str) -> set[int]:
    """Returns the versions the server reports AVAILABLE (none if it does not know the model).

    Raises:
        ServingError: the server cannot be asked (other than NOT_FOUND for the model).
    """
    from tfx_serving_ext.protocol.errors import ServingError

    try:
        statuses = client.model_status(model_name)
    except ServingError as exc:
        if exc.code != "NOT_FOUND":
            raise
        return set()
    return {s.version for s in statuses if s.state == "AVAILABLE"}


def wait_until_served(client: Any, model_name: str, version: int, timeout: float) -> None:
    """Returns once `version` is the newest AVAILABLE version of the model on the server.

    Unlike ServingClient.wait_until_available this tolerates END: after a rollback the target
    version is usually in END (unloaded when the newer one arrived) until the server reloads it.

    A server that answers with an error (unreachable, a failed status request) is asked again
    until the deadline: a replica restarting after a rollback is not a failure yet.

    Raises:
        ServingTimeout: it did not happen within `timeout` seconds (says the last error seen).
    """
    from tfx_serving_ext.protocol.errors import ServingError, ServingTimeout

    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    error: ServingError | None = None
    while True:
        try:
            seen, error = served_versions(client, model_name), None
        except ServingError as exc:
            seen, error = set(), exc
        if seen and max(seen) == version:
            return
        if time.monotonic() >= deadline:
            raise ServingTimeout(
                f"version {version} of {model_name} is not the newest AVAILABLE version after "
                f"{timeout:g}s (AVAILABLE: {sorted(seen)})"
                + (f"; last error: {error}" if error is not None else "")
            )
        time.sleep(0.1)
