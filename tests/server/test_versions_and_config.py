"""Version discovery, policies, labels, failed loads and model config files (incl. reload)."""

from __future__ import annotations

import shutil
import time

import pytest
from tensorflow_serving.config import model_server_config_pb2

from tests.server.conftest import HPT, publish
from tfx_serving_ext.client.client import ServingClient, ServingError, VersionLoadFailed
from tfx_serving_ext.protocol.model_config import ModelConfigError
from tfx_serving_ext.server import ModelServer, ServerOptions

FAST = {
    "file_system_poll_wait_seconds": 0.1,
    "load_retry_interval_seconds": 0.1,
    "max_num_load_retries": 2,
}


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def states(client, name):
    return {s.version: s.state for s in client.model_status(name)}


def config_text(base, extra: str = "") -> str:
    return f"""
model_config_list {{
  config {{ name: "latest2" base_path: "{base}" model_platform: "tensorflow"
           model_version_policy {{ latest {{ num_versions: 2 }} }}
           version_labels {{ key: "stable" value: 2 }}
           version_labels {{ key: "canary" value: 3 }} }}
  config {{ name: "every" base_path: "{base}" model_version_policy {{ all {{}} }} }}
  config {{ name: "chosen" base_path: "{base}"
           model_version_policy {{ specific {{ versions: 1 versions: 3 }} }} }}
  {extra}
}}
"""


@pytest.fixture(scope="module")
def three_versions(tmp_path_factory, half_plus_two_dir):
    base = tmp_path_factory.mktemp("three")
    for version in (1, 2, 3):
        publish(half_plus_two_dir, base, version)
    # Directories TF Serving ignores: non-numeric names, a staging copy, a file.
    shutil.copytree(half_plus_two_dir, base / "tmp")
    shutil.copytree(half_plus_two_dir, base / "7.tmp")
    (base / "9").write_text("a file, not a directory")
    return base


def test_policies_labels_and_ignored_directories(tmp_path, three_versions):
    config = tmp_path / "models.config"
    config.write_text(config_text(three_versions))
    options = ServerOptions(model_config_file=str(config), **FAST)
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        for name in ("latest2", "every", "chosen"):
            client.wait_until_available(name, timeout=60)
        wait_for(
            lambda: states(client, "every") == {3: "AVAILABLE", 2: "AVAILABLE", 1: "AVAILABLE"}
        )
        wait_for(lambda: states(client, "latest2") == {3: "AVAILABLE", 2: "AVAILABLE"})
        wait_for(lambda: states(client, "chosen") == {3: "AVAILABLE", 1: "AVAILABLE"})
        assert client.predict("latest2", {"x": [2.0]}).version == 3
        assert client.predict("latest2", {"x": [2.0]}, label="stable").version == 2
        assert client.predict("latest2", {"x": [2.0]}, label="canary").version == 3
        with pytest.raises(ServingError) as info:
            client.predict("latest2", {"x": [2.0]}, version=1)
        assert info.value.code == "NOT_FOUND"
        with pytest.raises(ServingError) as info:
            client.predict("latest2", {"x": [2.0]}, label="nope")
        assert info.value.code == "INVALID_ARGUMENT"
        with ServingClient(server.rest_url, protocol="rest") as rest:
            result = rest.predict("latest2", {"x": [2.0]}, label="stable")
            assert result.outputs["y"].tolist() == [3.0]


def test_bad_config_files_fail_start(tmp_path, three_versions):
    config = tmp_path / "bad.config"
    config.write_text("model_config_list { config { name: 'm' base_path: ")
    with pytest.raises(ModelConfigError, match="Error parsing text-format"):
        ModelServer(ServerOptions(model_config_file=str(config))).start()
    config.write_text(
        f'model_config_list {{ config {{ name: "m" base_path: "{three_versions}" }} '
        f'config {{ name: "m" base_path: "{three_versions}" }} }}'
    )
    with pytest.raises(ModelConfigError, match="multiple times"):
        ModelServer(ServerOptions(model_config_file=str(config))).start()


def test_reload_by_rpc_and_by_polling(tmp_path, three_versions):
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "first" base_path: "{three_versions}" }} }}'
    )
    options = ServerOptions(
        model_config_file=str(config), model_config_file_poll_wait_seconds=0.2, **FAST
    )
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        assert client.wait_until_available("first", timeout=60) == 3
        new = model_server_config_pb2.ModelServerConfig()
        model = new.model_config_list.config.add(name="second", base_path=str(three_versions))
        model.model_version_policy.specific.versions.append(2)
        client.reload_config(new)
        # The RPC returns once the new model is AVAILABLE; the left-out one is unloaded.
        assert client.predict("second", {"x": [2.0]}).version == 2
        wait_for(lambda: states(client, "first") == {3: "END"})
        with pytest.raises(ServingError) as info:
            client.predict("first", {"x": [2.0]})
        assert info.value.code == "NOT_FOUND"

        bad = model_server_config_pb2.ModelServerConfig()
        bad.model_config_list.config.add(name="second", base_path=str(three_versions))
        bad.model_config_list.config[0].version_labels["stable"] = 1
        with pytest.raises(ServingError) as info:
            client.reload_config(bad)
        assert info.value.code == "FAILED_PRECONDITION"
        assert "not currently available" in info.value.message
        # As in TF Serving, labels are checked before the model list changes: the rejected
        # config's policy (latest -> version 3) and its label were not applied.
        with pytest.raises(ServingError) as info:
            client.predict("second", {"x": [2.0]}, label="stable")
        assert info.value.code == "INVALID_ARGUMENT"
        time.sleep(0.5)
        assert states(client, "second") == {2: "AVAILABLE"}

        # Editing the file: polled and applied; a broken edit keeps the current config.
        config.write_text(
            f'model_config_list {{ config {{ name: "third" base_path: "{three_versions}" }} }}'
        )
        wait_for(
            lambda: (
                client.predict("third", {"x": [2.0]}).version == 3
                if _has(client, "third")
                else False
            )
        )
        config.write_text("model_config_list { oops")
        time.sleep(0.6)
        assert client.predict("third", {"x": [2.0]}).version == 3


def _has(client, name) -> bool:
    try:
        return any(s.state == "AVAILABLE" for s in client.model_status(name))
    except ServingError:
        return False


def test_failed_loads_end_with_error_and_old_version_keeps_serving(tmp_path, half_plus_two_dir):
    base = tmp_path / "base"
    publish(half_plus_two_dir, base, 1)
    options = ServerOptions(model_name=HPT, model_base_path=str(base), **FAST)
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        assert client.wait_until_available(HPT, timeout=60) == 1
        # A corrupt SavedModel as version 2.
        corrupt = base / ".staging"
        shutil.copytree(half_plus_two_dir, corrupt)
        (corrupt / "saved_model.pb").write_bytes(b"\x08\x01garbage-not-a-proto" * 10)
        corrupt.rename(base / "2")
        with pytest.raises(VersionLoadFailed) as info:
            client.wait_until_available(HPT, version=2, timeout=30)
        assert "saved_model.pb" in info.value.message
        assert client.predict(HPT, {"x": [2.0]}).version == 1
        assert states(client, HPT) == {2: "END", 1: "AVAILABLE"}

        # A half-written version 3 (no saved_model.pb yet) loads once the writer finishes.
        partial = base / "3"
        shutil.copytree(half_plus_two_dir / "variables", partial / "variables")
        time.sleep(0.15)
        shutil.copy(half_plus_two_dir / "saved_model.pb", partial / "saved_model.pb")
        assert client.wait_until_available(HPT, version=3, timeout=30) == 3
        wait_for(lambda: states(client, HPT).get(1) == "END")
        assert client.predict(HPT, {"x": [2.0]}).version == 3

        # Missing base path: logged, nothing unloaded. Empty base path: everything unloaded.
        moved = tmp_path / "moved"
        base.rename(moved)
        time.sleep(0.4)
        assert client.predict(HPT, {"x": [2.0]}).version == 3
        base.mkdir()
        wait_for(lambda: states(client, HPT).get(3) == "END")
        with pytest.raises(ServingError) as info:
            client.predict(HPT, {"x": [2.0]})
        assert info.value.code == "NOT_FOUND"


def test_a_poll_racing_a_reload_cannot_bring_back_a_removed_model(tmp_path, three_versions):
    """A poll that listed the disk before a reload removed its model reports after it: the
    report must not make the removed model load again (nothing would ever unload it)."""
    import threading

    from tfx_serving_ext.server.core import ServerCore

    def config_of(name, base):
        config = model_server_config_pb2.ModelServerConfig()
        config.model_config_list.config.add(name=name, base_path=str(base))
        return config

    (tmp_path / "empty").mkdir()
    core = ServerCore(file_system_poll_wait_seconds=-1)  # polls only when told to
    core.start(config_of("first", three_versions))
    manager = core.manager("first")
    original = manager.set_aspired_versions
    reload = threading.Thread(
        target=core.reload_config, args=(config_of("second", tmp_path / "empty"), 30.0)
    )

    def late_report(versions):
        if versions and not reload.is_alive() and reload.ident is None:
            reload.start()  # the reload runs between the poll's listing and its report
            reload.join(timeout=1.0)
        original(versions)

    manager.set_aspired_versions = late_report
    try:
        core._source.poll_once()
        reload.join(timeout=30)
        assert manager.wait_until_settled(60)
        assert manager.available_versions() == []
        assert core.model_names() == ["second"]
    finally:
        core.stop()
