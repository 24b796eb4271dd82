"""Consecutive pipeline runs with retrained models hot-swap the server with no failed request."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import pushed_models
from tfx_serving_ext.publish.volume import list_versions

pytestmark = pytest.mark.slow


def test_three_retrained_runs_push_versions_1_2_3_without_a_failed_request(served):
    home = served.home
    # Run 1 (seed 0) pushed version 1 before the server started; runs 2 and 3 happen under traffic.
    for seed, version in ((1, 2), (2, 3)):
        home.run_pipeline(seed, server_address=served.server.grpc_address)
        # The pusher waited for AVAILABLE, so the server is on the new version already.
        assert served.served_version() == version
        served.traffic.wait_for_version(version)
    log = served.traffic.stop()

    versions = list_versions(home.serving)
    assert sorted(versions) == [1, 2, 3]
    assert log.errors == []
    assert set(log.versions) == {1, 2, 3}
    assert log.versions == sorted(log.versions), "an older version answered after a newer one"
    pushed = pushed_models(home)
    assert [(p["pushed"], p["pushed_version"]) for p in pushed] == [(1, "1"), (1, "2"), (1, "3")]
    assert [p["verification"] for p in pushed[1:]] == ["available", "available"]
    # Retrained with different seeds: three different sets of weights.
    weights = {
        (path / "variables" / "variables.data-00000-of-00001").read_bytes()
        for path in versions.values()
    }
    assert len(weights) == 3
