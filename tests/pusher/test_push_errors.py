"""push_to_volume after the version is published: server trouble is reported, never raised."""

from __future__ import annotations

import shutil

from tfx_serving_ext.client.client import VersionStatus
from tfx_serving_ext.protocol.errors import ServerUnreachable, ServingTimeout
from tfx_serving_ext.publish import volume
from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume


class ScriptedClient:
    """Answers model_status from a script of replies (a list, or an exception to raise)."""

    def __init__(self, statuses, on_wait=None):
        self.statuses = list(statuses)
        self.on_wait = on_wait

    def model_status(self, model_name):
        reply = self.statuses.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def wait_until_available(self, model_name, version, timeout):
        if self.on_wait:
            self.on_wait(version)
        return version


def test_server_gone_while_labelling_still_reports_the_published_version(
    tmp_path, half_plus_two_dir
):
    base = tmp_path / "serving"
    config_file = tmp_path / "models.config"
    config_file.write_text('model_config_list { config { name: "m" base_path: "/x" } }')
    config = VolumePushConfig(
        base_directory=str(base),
        model_name="m",
        model_config_file=str(config_file),
        version_labels={"canary": "new"},
        server_address="127.0.0.1:1",
    )
    client = ScriptedClient([[], ServerUnreachable("connection refused")])
    result = push_to_volume(half_plus_two_dir, config, client=client)
    assert (result.pushed, result.version, result.labels) == (True, 1, {})
    assert "labels not moved" in result.message
    assert "canary" not in config_file.read_text()


def test_version_gone_before_the_failed_push_removes_it_is_still_a_failed_push(
    tmp_path, half_plus_two_dir
):
    base = tmp_path / "serving"

    def rolled_back_meanwhile(version):
        shutil.move(base / str(version), tmp_path / "elsewhere")
        raise ServingTimeout("not AVAILABLE")

    config = VolumePushConfig(base_directory=str(base), model_name="m", server_address="x:1")
    client = ScriptedClient([[VersionStatus(0, "AVAILABLE")]], on_wait=rolled_back_meanwhile)
    result = push_to_volume(half_plus_two_dir, config, client=client)
    assert (result.pushed, result.verification, result.rolled_back) == (False, "timeout", False)
    assert "already gone" in result.message
    assert volume.list_versions(base) == {}
