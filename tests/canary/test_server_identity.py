"""Which server gave the verdict: the identity in the report, the page, and `auto`'s warning."""

from __future__ import annotations

import logging

from tfx.proto import infra_validator_pb2

from tfx_serving_ext.canary.assessment import record_measurement
from tfx_serving_ext.canary.backends import choose_backend
from tfx_serving_ext.canary.judge import Verdict
from tfx_serving_ext.canary.measure import Measurement
from tfx_serving_ext.canary.report import render_html
from tfx_serving_ext.canary.server_identity import describe_server

DIGEST = "sha256:" + "ab" * 32


def test_auto_warns_loudly_when_it_ends_up_embedded(caplog):
    with caplog.at_level(logging.WARNING):
        assert choose_backend("auto", infra_validator_pb2.ServingSpec()) == "embedded"
    assert "FELL BACK TO THE EMBEDDED SERVER" in caplog.text


def test_image_pinned_by_digest_is_recorded_with_that_digest():
    spec = infra_validator_pb2.ServingSpec()
    spec.tensorflow_serving.digests.append(DIGEST)
    spec.local_docker.SetInParent()
    identity = describe_server("docker", spec)
    assert identity["tf_serving"] is True
    assert identity["image"] == f"tensorflow/serving@{DIGEST}"
    assert identity["image_digest"] == DIGEST
    assert identity["description"] == f"TF Serving image tensorflow/serving@{DIGEST} on docker"


def test_image_by_tag_without_a_daemon_says_the_digest_is_unknown():
    """No Docker daemon runs here: the digest cannot be asked, and the identity says so."""
    spec = infra_validator_pb2.ServingSpec()
    spec.tensorflow_serving.tags.append("2.19.1")
    spec.local_docker.client_base_url = "unix:///nonexistent/docker.sock"
    identity = describe_server("docker", spec)
    assert identity["image"] == "tensorflow/serving:2.19.1"
    assert identity["image_digest"] is None
    assert "(digest unknown)" in identity["description"]


def test_endpoint_is_tf_serving_at_its_address_with_its_declared_version():
    identity = describe_server("endpoint", endpoint_address="10.0.0.7:8500")
    assert identity == {
        "kind": "endpoint",
        "tf_serving": True,
        "address": "10.0.0.7:8500",
        "server_version": None,
        "description": "the TF Serving at 10.0.0.7:8500 (version not declared; TF Serving "
        "reports none)",
    }
    facts = {"address": "10.0.0.7:8500", "server_version": "2.19.1"}
    identity = describe_server("endpoint", facts=facts)
    assert identity["server_version"] == "2.19.1"
    assert (
        identity["description"] == "the TF Serving at 10.0.0.7:8500 (version 2.19.1, as declared)"
    )


def test_docker_timings_are_in_the_report_and_at_the_top_of_the_page():
    timings = {"container_start_seconds": 0.8, "server_start_seconds": 4.25}
    run = Measurement(backend="DockerBackend(...)", backend_name="docker", timings=timings)
    report = {"candidate": {"model_dir": "/m"}, "baseline": None}
    record_measurement(report, run, Verdict(blessed=True))
    assert report["backend"]["timings"] == timings
    report["server"] = {"kind": "docker", "tf_serving": True, "description": "TF Serving image x"}
    top = render_html(report).split("INFRA_BLESSED")[0]
    assert "Served by: <b>TF Serving image x</b>" in top
    assert "container_start_seconds 0.80 s, server_start_seconds 4.25 s" in top
    assert "not TF Serving" not in top
