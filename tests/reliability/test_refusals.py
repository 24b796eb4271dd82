"""Models that must not ship: refused by the validator or the canary, nothing pushed."""

from __future__ import annotations

import json

import pytest

from tests.reliability.conftest import pushed_models
from tests.support.failing_warmup import plant_failing_warmup_step
from tfx_serving_ext.publish.volume import list_versions

pytestmark = pytest.mark.slow


def test_retrain_that_removes_an_input_is_refused_by_the_validator(served):
    home = served.home
    home.run_pipeline(1, drop_features="body_mass_g", server_address=served.server.grpc_address)
    # Let the server poll the volume a few more times under traffic.
    served.traffic.wait_for_version(1, count=50)
    log = served.traffic.stop()

    assert sorted(list_versions(home.serving)) == [1]
    assert served.served_version() == 1
    assert log.errors == [] and set(log.versions) == {1}

    blessing = home.latest_output("SignatureValidator", "blessing")
    assert (blessing / "NOT_BLESSED").exists() and not (blessing / "BLESSED").exists()
    report = json.loads((blessing / "report.json").read_text())
    assert report["blessed"] is False
    reasons = [c for c in report["checks"] if not c["passed"]]
    assert any(
        c["signature"] == "predict_features" and "body_mass_g" in c["message"] for c in reasons
    ), reasons

    *_, refused = pushed_models(home)
    assert refused["pushed"] == 0
    assert "pushed_version" not in refused
    assert f"model_blessing (ModelBlessing at {blessing})" in refused["refused_by"]
    # The model loads and answers like the old one: only the contract check stands in its way.
    assert "infra_blessing" not in refused["refused_by"]


def test_model_whose_warmup_fails_in_serving_is_refused_by_the_canary(served):
    home = served.home
    home.run_pipeline(
        1, before_canary=plant_failing_warmup_step, server_address=served.server.grpc_address
    )
    served.traffic.wait_for_version(1, count=50)
    log = served.traffic.stop()

    assert sorted(list_versions(home.serving)) == [1]
    assert served.served_version() == 1
    assert log.errors == [] and set(log.versions) == {1}

    # The signatures are fine: the validator blessed it; only serving it shows the fault.
    assert (home.latest_output("SignatureValidator", "blessing") / "BLESSED").exists()
    blessing = home.latest_output("ServingCanary", "blessing")
    assert (blessing / "INFRA_NOT_BLESSED").exists()
    report = json.loads((blessing / "report.json").read_text())
    assert report["verdict"]["blessed"] is False
    load_error = report["candidate"]["load_error"]
    assert "no_such_input" in load_error and "Warmup request" in load_error, load_error
    assert "no_such_input" in (blessing / "server.log").read_text()

    *_, refused = pushed_models(home)
    assert refused["pushed"] == 0
    assert f"infra_blessing (InfraBlessing at {blessing})" in refused["refused_by"]
    assert "model_blessing" not in refused["refused_by"]
