"""Version directory names are parsed exactly as TF Serving parses them (strings::safe_strto64).

Only ASCII digits (optionally surrounded by whitespace) are a version: `²` and `٧` satisfy
Python's `str.isdigit()` and `+5` satisfies `int()`, yet TF Serving ignores all three. A server,
a push and `versions` must neither crash on them nor take them for versions.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.server.conftest import HPT, publish
from tfx_serving_ext.client.client import ServingClient
from tfx_serving_ext.protocol.versions import list_versions, parse_version
from tfx_serving_ext.server import ModelServer, ServerOptions

ODD_NAMES = ("²", "٧", "+5", "-3", "1 2", "99999999999999999999")


@pytest.mark.parametrize(
    ("name", "version"),
    [("7", 7), ("007", 7), ("7 ", 7), ("\t12\n", 12), ("9223372036854775807", 2**63 - 1)]
    + [(name, None) for name in ODD_NAMES],
)
def test_parse_version_follows_safe_strto64(name, version):
    assert parse_version(name) == version


@pytest.fixture(scope="module")
def odd_volume(tmp_path_factory, half_plus_two_dir):
    base = tmp_path_factory.mktemp("odd") / HPT
    publish(half_plus_two_dir, base, 1)
    for index, name in enumerate(ODD_NAMES):
        publish(half_plus_two_dir, base, 100 + index, name=name)
    return base


def test_server_starts_and_serves_the_only_real_version(odd_volume):
    assert sorted(list_versions(odd_volume)) == [1]
    options = ServerOptions(model_name=HPT, model_base_path=str(odd_volume))
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        assert client.wait_until_available(HPT, timeout=60) == 1
        assert [s.version for s in client.model_status(HPT)] == [1]


def test_push_and_versions_commands_ignore_odd_names(odd_volume, half_plus_two_dir):
    cli = [sys.executable, "-m", "tfx_serving_ext.cli"]
    pushed = subprocess.run(
        [*cli, "push", str(half_plus_two_dir), str(odd_volume), "--model-name", HPT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    assert sorted(list_versions(odd_volume)) == [1, 2]
    listed = subprocess.run(
        [*cli, "versions", str(odd_volume), "--model-name", HPT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    for name in ODD_NAMES:
        assert (odd_volume / name).is_dir(), f"{name!r} was touched"
