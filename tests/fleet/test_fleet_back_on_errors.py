"""Waiting for the fleet to be back on a version: a replica's errors are retried, then a state."""

from __future__ import annotations

from types import SimpleNamespace

from tfx_serving_ext.protocol.errors import ServingError
from tfx_serving_ext.publish.fleet import ROLLED_BACK, TIMEOUT, Fleet, Replica, wait_fleet_back_on
from tfx_serving_ext.publish.served_versions import wait_until_served


class FlakyClient:
    """Answers model_status with `failures` INTERNAL errors first, then version `serves`."""

    def __init__(self, failures: int, serves: int = 1):
        self.failures, self.serves, self.calls = failures, serves, 0

    def model_status(self, model_name: str):
        self.calls += 1
        if self.calls <= self.failures:
            raise ServingError("INTERNAL", "status request failed")
        return [SimpleNamespace(version=self.serves, state="AVAILABLE")]


def test_wait_until_served_retries_serving_errors_until_its_deadline():
    client = FlakyClient(failures=3)
    wait_until_served(client, "m", 1, timeout=10)
    assert client.calls == 4


def test_a_replica_that_keeps_failing_is_a_state_not_a_traceback():
    fleet = Fleet(
        [Replica("good:1", FlakyClient(failures=1)), Replica("bad:1", FlakyClient(failures=10**6))],
        owned=False,
    )
    states = wait_fleet_back_on(fleet, "m", 1, timeout=0.5)
    assert [s.state for s in states] == [ROLLED_BACK, TIMEOUT]
    assert "INTERNAL: status request failed" in states[1].message


class ScriptedClient:
    """Answers model_status with each list of (version, state) in turn, the last one forever."""

    def __init__(self, *answers: list[tuple[int, str]]):
        self.answers, self.calls = list(answers), 0

    def model_status(self, model_name: str):
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [SimpleNamespace(version=v, state=s) for v, s in answer]


def test_wait_until_served_waits_out_a_removed_version_still_loading():
    """A rolled-back version whose load began before its removal becomes AVAILABLE for a while
    (seen on three containers): 'back on 2' must not be said while 3 may still be served."""
    client = ScriptedClient(
        [(2, "AVAILABLE"), (3, "LOADING")],
        [(2, "AVAILABLE"), (3, "AVAILABLE")],
        [(2, "AVAILABLE"), (3, "UNLOADING")],
        [(2, "AVAILABLE"), (3, "END")],
    )
    wait_until_served(client, "m", 2, timeout=10)
    assert client.calls == 3  # returned once 3 was on its way out (UNLOADING serves nothing)
