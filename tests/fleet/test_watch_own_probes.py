"""The watch's own probe of an unloaded previous version is not held against the new version.

With TF Serving's default policy (latest 1) the previous version is gone once the new one is
AVAILABLE; the watch's first replay at it answers NOT_FOUND, which TF Serving's request_count
also counts. With little live traffic that one probe alone would be over a 1% error rate.
"""

from __future__ import annotations

from tests.fleet.conftest import MODEL, NOISY_MACHINE_THRESHOLDS
from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume


def test_a_good_version_passes_a_metrics_watch_when_the_policy_unloads_the_previous(
    tmp_path, fleet_models
):
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.publish import volume
    from tfx_serving_ext.server import ModelServer, ServerOptions

    base = tmp_path / "serving"
    volume.publish_version(fleet_models.v1, base)
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }'
    )
    options = ServerOptions(
        model_name=MODEL,
        model_base_path=str(base),
        file_system_poll_wait_seconds=0.1,
        monitoring_config_file=str(monitoring),
    )
    with ModelServer(options) as server:
        with ServingClient(server.grpc_address) as client:
            client.wait_until_available(MODEL, version=1, timeout=60)
        rest = server.rest_url.removeprefix("http://")
        config = VolumePushConfig(
            str(base), model_name=MODEL, fleet=[rest], server_protocol="rest",
            watch_seconds=3, watch_interval_seconds=0.2, verify_timeout_seconds=60,
            watch_thresholds=NOISY_MACHINE_THRESHOLDS,
        )  # fmt: skip
        result = push_to_volume(fleet_models.good, config)
    watch = result.watch
    assert result.pushed and watch["verdict"] == "passed", (result.message, watch)
    [replica] = watch["replicas"].values()
    assert replica["previous_unserved"] is True
    assert replica["metrics_after"]["errors"] == 0, replica
