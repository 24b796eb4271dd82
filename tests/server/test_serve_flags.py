"""`tfx-serving-ext serve` under tensorflow_model_server's flags, as launch scripts pass them.

- Every flag of tensorflow_model_server parses, as `--flag=value` or `--flag value`, booleans
  also bare; GPU/TPU/TFLite/XLA flags are named in one warning, unimplemented ones in another.
- The flags that mean something here act: a Unix socket answers gRPC, channel arguments reach
  the gRPC server, `--version` prints and exits 0.
- Start-up as TF Serving's: the port opens only once the models are AVAILABLE (warmup included),
  and a model that cannot load makes `serve` exit non-zero naming it.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.server.conftest import predict_log, publish, write_warmup
from tfx_serving_ext.client.client import ServingClient, ServingError
from tfx_serving_ext.commands import _serve_flags
from tfx_serving_ext.server import ModelServer, ServerOptions
from tfx_serving_ext.server.grpc_service import parse_channel_arguments

REPO = Path(__file__).resolve().parents[2]

# tensorflow_model_server's flags (tensorflow_serving/model_servers/main.cc), for the test that
# every one of them parses.
TF_SERVING_FLAGS = [
    "port",
    "grpc_socket_path",
    "rest_api_port",
    "rest_api_num_threads",
    "rest_api_timeout_in_ms",
    "rest_api_enable_cors_support",
    "enable_batching",
    "allow_version_labels_for_unavailable_models",
    "batching_parameters_file",
    "enable_per_model_batching_parameters",
    "model_config_file",
    "model_config_file_poll_wait_seconds",
    "model_name",
    "model_base_path",
    "num_load_threads",
    "num_unload_threads",
    "max_num_load_retries",
    "load_retry_interval_micros",
    "file_system_poll_wait_seconds",
    "flush_filesystem_caches",
    "tensorflow_session_parallelism",
    "tensorflow_session_config_file",
    "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism",
    "use_alts_credentials",
    "ssl_config_file",
    "platform_config_file",
    "per_process_gpu_memory_fraction",
    "saved_model_tags",
    "grpc_channel_arguments",
    "grpc_max_threads",
    "enable_model_warmup",
    "num_request_iterations_for_warmup",
    "version",
    "monitoring_config_file",
    "remove_unused_fields_from_bundle_metagraph",
    "prefer_tflite_model",
    "num_tflite_pools",
    "num_tflite_interpreters_per_pool",
    "enable_signature_method_name_check",
    "xla_cpu_compilation_enabled",
    "xla_gpu_compilation_enabled",
    "enable_profiler",
    "thread_pool_factory_config_file",
    "mixed_precision",
    "skip_initialize_tpu",
    "enable_grpc_healthcheck_service",
    "enable_serialization_as_tensor_content",
]


def _parse(*argv: str) -> argparse.Namespace:
    from tfx_serving_ext.cli import build_parser

    return build_parser().parse_args(["serve", *argv])


def _sample_value(flag) -> str:
    return {bool: "true", int: "3", float: "0.5", str: "x"}[flag.type]


def test_every_tf_serving_flag_parses_in_both_forms():
    for name in TF_SERVING_FLAGS:
        flag = _serve_flags.FLAGS[name]
        value = _sample_value(flag)
        joined = _parse(f"--{name}={value}")
        separate = _parse(f"--{name}", value)
        assert getattr(joined, name) == getattr(separate, name), name


def test_boolean_flags_bare_or_with_a_value():
    assert _parse("--enable_batching").enable_batching is True
    assert _parse("--enable_batching=false").enable_batching is False
    assert _parse("--enable_batching", "false", "--port=1").enable_batching is False
    args = _parse("--enable_model_warmup", "--port", "9000")
    assert args.enable_model_warmup is True and args.port == 9000
    assert _parse("--enable_model_warmup=0").enable_model_warmup is False
    assert _parse("--host", "0.0.0.0").host == "0.0.0.0"  # ours, kept


def test_warnings_name_the_flags_that_do_nothing_here_once():
    args = _parse(
        "--per_process_gpu_memory_fraction=0.5",
        "--xla_cpu_compilation_enabled",
        "--rest_api_enable_cors_support",
        "--num_load_threads=4",
        "--enable_signature_method_name_check=false",
    )
    warnings = _serve_flags.warnings_for(args)
    assert len(warnings) == 2
    hardware, missing = warnings
    assert "--per_process_gpu_memory_fraction=0.5" in hardware
    assert "--xla_cpu_compilation_enabled=true" in hardware
    assert missing.endswith("--rest_api_enable_cors_support=true")
    assert not any("num_load_threads" in w for w in warnings)
    assert _serve_flags.warnings_for(_parse("--rest_api_enable_cors_support=false")) == []


def test_channel_arguments_parse_as_tf_serving():
    assert parse_channel_arguments("grpc.max_receive_message_length=100, grpc.x=abc") == [
        ("grpc.max_receive_message_length", 100),
        ("grpc.x", "abc"),
    ]
    with pytest.raises(ValueError, match="key=value"):
        parse_channel_arguments("grpc.max_receive_message_length")


def test_unix_socket_and_channel_arguments(tmp_path, half_plus_two_dir):
    base = tmp_path / "base"
    publish(half_plus_two_dir, base, 1)
    socket_path = tmp_path / "grpc.sock"
    options = ServerOptions(
        model_name="hpt",
        model_base_path=str(base),
        grpc_socket_path=str(socket_path),
        grpc_channel_arguments="grpc.max_receive_message_length=65536",
        wait_for_initial_models=True,
    )
    with ModelServer(options), ServingClient(f"unix:{socket_path}") as client:
        assert client.predict("hpt", {"x": [2.0]}).outputs["y"].tolist() == [3.0]
        with pytest.raises(ServingError) as refused:
            client.predict("hpt", {"x": np.zeros(100_000, np.float32)})
        assert refused.value.code == "RESOURCE_EXHAUSTED"


def test_saved_model_tags_choose_the_meta_graph(tmp_path, half_plus_two_dir):
    base = tmp_path / "base"
    publish(half_plus_two_dir, base, 1)
    options = ServerOptions(
        model_name="hpt",
        model_base_path=str(base),
        saved_model_tags=("serve", "tpu"),
        max_num_load_retries=0,
        wait_for_initial_models=True,
    )
    with pytest.raises(ServingError, match=r"tag set \['serve', 'tpu'\]"):
        ModelServer(options).start()


def test_labels_for_unavailable_versions_with_the_flag(tmp_path, half_plus_two_dir):
    from tfx_serving_ext.protocol import model_config as config_lib

    base = tmp_path / "base"
    publish(half_plus_two_dir, base, 1)
    config = config_lib.model_server_config([("hpt", str(base))], "latest", 1, ())
    config.model_config_list.config[0].version_labels["next"] = 2
    for allowed in (False, True):
        options = ServerOptions(
            model_name="hpt",
            model_base_path=str(base),
            allow_version_labels_for_unavailable_models=allowed,
            wait_for_initial_models=True,
        )
        with ModelServer(options) as server:
            if allowed:
                server.core.reload_config(config)
                assert server.core.manager("hpt").labels() == {"next": 2}
            else:
                with pytest.raises(ServingError, match="not currently available"):
                    server.core.reload_config(config)


# ---- `serve` as a subprocess -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(tmp_path: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfx_serving_ext.cli",
            "--log-file",
            str(tmp_path / "serve.log"),
            "serve",
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "stderr.txt").open("w"),
        text=True,
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )


def _grpc_address(process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = re.search(r"Running gRPC ModelServer at (\S+:\d+)", line)
        if match:
            return match.group(1)
    raise AssertionError("serve never said it was listening")


def _stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_version_prints_and_exits_zero():
    done = subprocess.run(
        [sys.executable, "-m", "tfx_serving_ext.cli", "serve", "--version"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0
    assert re.match(r"TensorFlow ModelServer: \S+", done.stdout)
    assert "TensorFlow Library: 2." in done.stdout


def test_a_launch_scripts_flags_no_longer_stop_the_server(tmp_path, half_plus_two_dir):
    base = tmp_path / "base"
    publish(half_plus_two_dir, base, 123, name="00000123")
    socket_path = tmp_path / "serving.sock"
    process = _serve(
        tmp_path,
        "--port=0",
        "--model_name=hpt",
        f"--model_base_path={base}",
        "--grpc_socket_path",
        str(socket_path),
        "--grpc_channel_arguments=grpc.max_connection_age_ms=60000",
        "--enable_batching",
        "--rest_api_enable_cors_support",
        "--tensorflow_intra_op_parallelism=1",
        "--tensorflow_inter_op_parallelism",
        "1",
        "--rest_api_num_threads=2",
        "--grpc_max_threads=4",
        "--saved_model_tags=serve",
        "--num_load_threads=2",
        "--per_process_gpu_memory_fraction=0.3",
        "--xla_cpu_compilation_enabled=true",
    )
    try:
        address = _grpc_address(process)
        for target in (address, f"unix:{socket_path}"):
            with ServingClient(target) as client:
                assert client.predict("hpt", {"x": [2.0]}).outputs["y"].tolist() == [3.0]
    finally:
        assert _stop(process) == 0
    stderr = (tmp_path / "stderr.txt").read_text()
    hardware = [line for line in stderr.splitlines() if "GPU/TPU/TFLite/XLA" in line]
    assert len(hardware) == 1, stderr
    assert "--per_process_gpu_memory_fraction=0.3" in hardware[0]
    assert "--xla_cpu_compilation_enabled=true" in hardware[0]
    assert "--rest_api_enable_cors_support=true" in stderr


def test_serve_exits_non_zero_naming_a_model_that_cannot_load(tmp_path):
    base = tmp_path / "broken"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    process = _serve(
        tmp_path,
        "--port=0",
        "--model_name=broken_model",
        f"--model_base_path={base}",
        "--max_num_load_retries=0",
    )
    try:
        code = process.wait(timeout=180)
    finally:
        _stop(process)
    assert code != 0
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "1 model(s) did not become available" in stderr
    assert "broken_model" in stderr
    assert "Running gRPC ModelServer" not in process.stdout.read()


def test_port_open_means_available_for_serve(tmp_path, half_plus_two_dir):
    """With a warmup that takes seconds, the first TCP connect already finds the model ready."""
    base = tmp_path / "base"
    version_dir = publish(half_plus_two_dir, base, 5)
    write_warmup(version_dir, [predict_log({"x": [float(i)] * 256}) for i in range(1000)])
    port = _free_port()
    process = _serve(
        tmp_path,
        f"--port={port}",
        "--model_name=hpt",
        f"--model_base_path={base}",
        "--num_request_iterations_for_warmup=3",
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, "serve exited"
            assert time.monotonic() < deadline, "the port never opened"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        with ServingClient(f"127.0.0.1:{port}") as client:
            assert [s.state for s in client.model_status("hpt")] == ["AVAILABLE"]
            assert client.predict("hpt", {"x": [2.0]}).version == 5
    finally:
        assert _stop(process) == 0
