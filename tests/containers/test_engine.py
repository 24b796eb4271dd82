"""The private Docker engine itself: it runs containers, and its network stays in its namespace."""

from __future__ import annotations

import subprocess

from tests.containers.fixtures import leftovers


def test_engine_runs_in_its_own_namespace_and_leaves_the_host_network_alone(docker_engine):
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "docker0" not in host_links
    inside = docker_engine.run_in_netns(["ip", "-o", "link"], timeout=10).stdout
    assert "docker0" in inside
    assert leftovers(docker_engine) == {"containers": [], "networks": [], "volumes": []}
