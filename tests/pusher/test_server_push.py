"""Pushing to a volume that the embedded model server polls, under a continuous request stream."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.pusher.conftest import model_artifact
from tfx_serving_ext.publish import volume
from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume

MODEL = "m"


class RequestStream(threading.Thread):
    """Sends Predict(x=2) over gRPC back to back; records (version, y) and every failure."""

    def __init__(self, address: str):
        super().__init__(daemon=True)
        self.address = address
        self.answers: list[tuple[int, float]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        from tfx_serving_ext.client.client import ServingClient

        with ServingClient(self.address) as client:
            while not self._halt.is_set():
                try:
                    result = client.predict(MODEL, {"x": [2.0]})
                    self.answers.append((result.version, float(result.outputs["y"][0])))
                except Exception as exc:  # every failure is what the test looks for
                    self.errors.append(repr(exc))
                time.sleep(0.005)

    def wait_for(self, condition, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.answers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert condition(self.answers), f"stream never saw it; last answers {self.answers[-3:]}"

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


@pytest.fixture
def served(tmp_path, half_plus_two_dir):
    """Version 1 (y = 0.5x + 2) on a volume, an embedded server polling it, a request stream."""
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.server import ModelServer, ServerOptions

    base = tmp_path / "serving"
    volume.publish_version(half_plus_two_dir, base)
    config_file = tmp_path / "models.config"
    config_file.write_text(
        f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" '
        'model_platform: "tensorflow" '
        "model_version_policy { latest { num_versions: 2 } } } }"
    )
    server = ModelServer(
        ServerOptions(
            model_config_file=str(config_file),
            model_config_file_poll_wait_seconds=0.2,
            port=0,
            rest_api_port=0,
            file_system_poll_wait_seconds=0.1,
            max_num_load_retries=1,
            load_retry_interval_seconds=0.2,
        )
    )
    server.start()
    stream = None
    try:
        with ServingClient(server.grpc_address) as client:
            client.wait_until_available(MODEL, version=1, timeout=60)
            stream = RequestStream(server.grpc_address)
            stream.start()
            stream.wait_for(lambda answers: len(answers) >= 5)
            yield SimpleNamespace(
                server=server, base=base, client=client, stream=stream, config_file=config_file
            )
    finally:
        if stream is not None:
            stream.stop()
        server.stop()


def numeric_dirs(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir() if p.name.isdigit())


def test_pusher_hot_swaps_under_traffic_with_no_failed_request(
    served, tmp_path, half_plus_three_dir
):
    from tfx.types import standard_artifacts

    from tfx_serving_ext.components.serving_pusher import executor

    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    destination = {
        "base_directory": str(served.base),
        "model_name": MODEL,
        "server_address": served.server.rest_url,  # verify over REST; the stream uses gRPC
        "server_protocol": "rest",
        "verify_timeout_seconds": 60,
    }
    executor.Executor().Do(
        {
            "model": [model_artifact(tmp_path / "model", half_plus_three_dir)],
            "model_blessing": [blessing],
        },
        {"pushed_model": [pushed]},
        {"destination": "serving_volume", "push_destination": json.dumps(destination)},
    )
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_version") == "2"
    assert pushed.get_string_custom_property("verification") == "available"
    served.stream.wait_for(lambda answers: answers[-1][0] == 2)
    served.stream.stop()
    assert served.stream.errors == []
    assert set(served.stream.answers) == {(1, 3.0), (2, 4.0)}
    assert served.stream.answers[0] == (1, 3.0) and served.stream.answers[-1] == (2, 4.0)


def test_unloadable_model_fails_the_push_and_is_rolled_back(served, unloadable_model_dir):
    config = VolumePushConfig(
        base_directory=str(served.base),
        model_name=MODEL,
        server_address=served.server.grpc_address,
        verify_timeout_seconds=60,
    )
    result = push_to_volume(unloadable_model_dir, config)
    assert not result.pushed
    assert result.verification == "load_failed"
    assert result.rolled_back
    assert "version 2 failed to load" in result.message
    assert numeric_dirs(served.base) == ["1"]
    time.sleep(0.5)  # a few more polls and requests after the rollback
    served.stream.stop()
    assert served.stream.errors == []
    assert set(served.stream.answers) == {(1, 3.0)}
    # The failed number is burnt: the next push gets 3.
    assert volume.next_version(served.base) == 3


def test_cli_exit_codes_tell_a_failed_verification_from_a_refusal(
    served, unloadable_model_dir, tmp_path, capsys
):
    from tfx_serving_ext.cli import main

    common = [str(served.base), "--server", served.server.grpc_address, "--model-name", MODEL]
    capsys.readouterr()
    assert main(["push", str(unloadable_model_dir), *common, "--timeout", "60"]) == 1
    captured = capsys.readouterr()
    assert "FAILED: version 2 failed to load" in captured.out
    assert "the version was removed again" in captured.out
    assert "FAILED after" in captured.err and "Traceback" not in captured.err
    (tmp_path / "empty").mkdir()
    assert main(["push", str(tmp_path / "empty"), *common]) == 2  # refused, never published
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "No SavedModel found" in line
    assert numeric_dirs(served.base) == ["1"]
    assert served.client.predict(MODEL, {"x": [2.0]}).version == 1


def test_cli_rollback_returns_the_server_to_the_previous_version(
    served, half_plus_three_dir, capsys
):
    from tfx_serving_ext.cli import main

    address = served.server.grpc_address
    assert main(["push", str(half_plus_three_dir), str(served.base), "--server", address,
                 "--model-name", MODEL]) == 0  # fmt: skip
    served.stream.wait_for(lambda answers: answers[-1] == (2, 4.0))
    capsys.readouterr()
    assert main(["versions", str(served.base), "--server", address, "--model-name", MODEL]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["VERSION", "DIRECTORY", "SIZE", "SERVER", "LABELS"]
    assert rows[1][0] == "2" and rows[1][-1] == "AVAILABLE"
    assert main(["rollback", str(served.base), "--server", address, "--model-name", MODEL]) == 0
    served.stream.wait_for(lambda answers: answers[-1] == (1, 3.0))
    served.stream.stop()
    assert served.stream.errors == []
    assert numeric_dirs(served.base) == ["1"]
    assert served.client.predict(MODEL, {"x": [2.0]}).version == 1


def test_labels_are_set_once_available_and_the_server_routes_them(served, half_plus_three_dir):
    config = VolumePushConfig(
        base_directory=str(served.base),
        model_name=MODEL,
        model_config_file=str(served.config_file),
        version_labels={"canary": "new", "stable": "previous"},
        server_address=served.server.grpc_address,
        verify_timeout_seconds=60,
    )
    result = push_to_volume(half_plus_three_dir, config)
    assert result.pushed and result.labels == {"canary": 2, "stable": 1}
    deadline = time.monotonic() + 20
    while True:  # the server re-reads the config file every 0.2 s
        try:
            canary = served.client.predict(MODEL, {"x": [2.0]}, label="canary")
            stable = served.client.predict(MODEL, {"x": [2.0]}, label="stable")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert (canary.version, float(canary.outputs["y"][0])) == (2, 4.0)
    assert (stable.version, float(stable.outputs["y"][0])) == (1, 3.0)
    served.stream.stop()
    assert served.stream.errors == []


def test_push_killed_mid_copy_leaves_server_on_old_version_and_next_push_cleans_up(
    served, tmp_path, half_plus_three_dir
):
    big = tmp_path / "big_model"
    shutil.copytree(half_plus_three_dir, big)
    (big / "assets" / "big.bin").write_bytes(b"\0" * (32 * 1024 * 1024))
    # The child slows its copy through the progress hook and says when it is half way.
    script = textwrap.dedent(
        """
        import sys, time
        from tfx_serving_ext.publish import volume
        def slow(done, total):
            if done >= total // 2:
                print("halfway", flush=True)
            time.sleep(0.2)
        volume.publish_version(sys.argv[1], sys.argv[2], progress=slow)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(big), str(served.base)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert proc.stdout.readline().strip() == "halfway"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    staging = [p for p in served.base.iterdir() if p.name.startswith(".staging-")]
    assert len(staging) == 1  # the partial copy, under a name TF Serving ignores
    assert numeric_dirs(served.base) == ["1"]
    time.sleep(0.5)  # several server polls with the partial copy present
    assert {version for version, _ in served.stream.answers} == {1}

    config = VolumePushConfig(
        base_directory=str(served.base),
        model_name=MODEL,
        server_address=served.server.grpc_address,
        verify_timeout_seconds=60,
    )
    result = push_to_volume(half_plus_three_dir, config)
    assert result.pushed and result.version == 3  # 2 was claimed by the killed push: burnt
    assert numeric_dirs(served.base) == ["1", "3"]
    assert not [p for p in served.base.iterdir() if p.name.startswith(".staging-")]
    served.stream.wait_for(lambda answers: answers[-1] == (3, 4.0))
    served.stream.stop()
    assert served.stream.errors == []
