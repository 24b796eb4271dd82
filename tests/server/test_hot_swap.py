"""Hot swap under a continuous request stream: publish by rename, roll back by delete."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np

from tests.server.conftest import HPT, publish
from tfx_serving_ext.client.client import ServingClient
from tfx_serving_ext.server import ModelServer, ServerOptions


def test_swap_and_rollback_under_load_loses_no_request(tmp_path, half_plus_two_dir):
    base = tmp_path / "base"
    publish(half_plus_two_dir, base, 1)
    options = ServerOptions(
        model_name=HPT, model_base_path=str(base), file_system_poll_wait_seconds=0.1
    )
    with ModelServer(options) as server:
        monitor = ServingClient(server.grpc_address)
        assert monitor.wait_until_available(HPT, timeout=60) == 1
        ever_available: set[int] = {1}
        answers: list[tuple[str, int]] = []
        failures: list[str] = []
        stop = threading.Event()

        def stream(protocol: str, address: str) -> None:
            with ServingClient(address, protocol=protocol, timeout=10) as client:
                while not stop.is_set():
                    try:
                        result = client.predict(HPT, {"x": [2.0]})
                        if result.outputs["y"].tolist() != [3.0]:
                            failures.append(f"wrong answer {result.outputs}")
                        answers.append((protocol, result.version))
                    except Exception as exc:  # any failure fails the test
                        failures.append(f"{protocol}: {exc!r}")

        def watch_states() -> None:
            while not stop.is_set():
                for status in monitor.model_status(HPT):
                    if status.state == "AVAILABLE":
                        ever_available.add(status.version)
                time.sleep(0.02)

        threads = [
            threading.Thread(target=stream, args=("grpc", server.grpc_address)),
            threading.Thread(target=stream, args=("grpc", server.grpc_address)),
            threading.Thread(target=stream, args=("rest", server.rest_url)),
            threading.Thread(target=watch_states),
        ]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.3)
            publish(half_plus_two_dir, base, 2)
            assert monitor.wait_until_available(HPT, version=2, timeout=30) == 2
            time.sleep(0.4)
            publish(half_plus_two_dir, base, 3)
            assert monitor.wait_until_available(HPT, version=3, timeout=30) == 3
            time.sleep(0.4)
            shutil.rmtree(base / "3")  # rollback: version 2 is loaded again, then 3 unloaded
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                states = {s.version: s.state for s in monitor.model_status(HPT)}
                if states == {3: "END", 2: "AVAILABLE", 1: "END"}:
                    break
                time.sleep(0.05)
            time.sleep(0.4)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert failures == []
        grpc_versions = [v for protocol, v in answers if protocol == "grpc"]
        assert len(answers) > 50
        assert set(grpc_versions) <= ever_available
        assert {1, 2, 3} <= set(grpc_versions)
        assert grpc_versions[-1] == 2  # ends on the rolled-back-to version
        assert states == {3: "END", 2: "AVAILABLE", 1: "END"}
        assert monitor.predict(HPT, {"x": [2.0]}).version == 2
        monitor.close()


def test_client_follows_a_swap_that_changes_an_input_dtype(tmp_path, half_plus_two_dir):
    """The client casts inputs to the dtypes it read from the server's metadata; after a swap
    to a version whose input is float64, it re-reads them instead of failing forever."""
    import tensorflow as tf

    class Doubles(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float64, name="x")])
        def serve(self, x):
            return {"y": x * 0.5 + 2.0}

    module = Doubles()
    float64_model = tmp_path / "float64"
    tf.saved_model.save(module, str(float64_model), signatures={"serving_default": module.serve})
    base = tmp_path / "base"
    publish(half_plus_two_dir, base, 1)
    options = ServerOptions(
        model_name=HPT, model_base_path=str(base), file_system_poll_wait_seconds=0.1
    )
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        assert client.wait_until_available(HPT, timeout=60) == 1
        assert client.predict(HPT, {"x": [2.0]}).version == 1  # caches x: float
        publish(float64_model, base, 2)
        client.wait_until_available(HPT, version=2, timeout=60)
        deadline = time.monotonic() + 30
        while client.model_status(HPT, version=1)[0].state != "END":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        result = client.predict(HPT, {"x": [2.0]})
        assert (result.version, result.outputs["y"].tolist()) == (2, [3.0])
        assert result.outputs["y"].dtype == np.float64
