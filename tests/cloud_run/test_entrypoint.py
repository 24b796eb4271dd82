"""The image entrypoint run for real: REST on $PORT, gRPC moved off $PORT, flags passed through.

No `tensorflow_model_server` binary exists here, so a shim of that name on PATH execs the
project's embedded TF-Serving-compatible server (`tfx-serving-ext serve`, same flags). The
shim records its argv so the flags the entrypoint builds are asserted exactly. The embedded
server binds 127.0.0.1 (MODEL_SERVER_HOST, which the tests set to keep to loopback); the real
tensorflow_model_server binds all interfaces and gets no --host flag (asserted below).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import requests
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

ENTRYPOINT = Path(__file__).parents[2] / "tfx_serving_ext" / "cloud_run" / "entrypoint.sh"


def _two_free_adjacent_ports() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    pytest.fail("no two adjacent free ports on 127.0.0.1")


def _shim_dir(tmp_path: Path, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "tensorflow_model_server"
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/argv"\n{body}\n')
    shim.chmod(0o755)
    return bin_dir


def _run_entrypoint(tmp_path: Path, env: dict[str, str], *args: str, body: str = "exit 0"):
    bin_dir = _shim_dir(tmp_path, body)
    full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **env}
    proc = subprocess.run(
        ["sh", str(ENTRYPOINT), *args], env=full_env, capture_output=True, text=True, timeout=30
    )
    argv = (tmp_path / "argv").read_text().split("\n")[:-1] if (tmp_path / "argv").exists() else []
    return proc, argv


def test_rest_on_port_and_grpc_moved_off_it_both_answer(tiny_saved_model, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_saved_model, models / "affine" / "1")
    port = _two_free_adjacent_ports()
    repo_root = Path(__file__).parents[2]
    bin_dir = _shim_dir(
        tmp_path, f'cd "{repo_root}" && exec "{sys.executable}" -m tfx_serving_ext.cli serve "$@"'
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PORT": str(port),
        "GRPC_PORT": str(port),  # collides with $PORT: gRPC must move to port + 1
        "MODEL_NAME": "affine",
        "MODEL_BASE_PATH": str(models),
        "MODEL_SERVER_HOST": "127.0.0.1",
    }
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(["sh", str(ENTRYPOINT)], env=env, stdout=log, stderr=log)
    try:
        status = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/v1/models/affine", timeout=2)
                if r.status_code == 200 and "AVAILABLE" in r.text:
                    status = r.json()
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        assert status is not None, (tmp_path / "server.log").read_text()[-3000:]
        assert status["model_version_status"][0]["version"] == "1"
        predict = requests.post(
            f"http://127.0.0.1:{port}/v1/models/affine:predict",
            json={"instances": [1.0, 3.0]},
            timeout=10,
        )
        assert predict.status_code == 200, predict.text
        assert predict.json()["predictions"] == [3.0, 7.0]

        with grpc.insecure_channel(f"127.0.0.1:{port + 1}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "affine"
            reply = stub.GetModelStatus(request, timeout=10)
        assert [s.version for s in reply.model_version_status] == [1]

        # `exec`: the shell is gone, the server itself is the process the platform signals.
        argv = (tmp_path / "argv").read_text().split("\n")
        assert f"--port={port + 1}" in argv and f"--rest_api_port={port}" in argv
        proc.terminate()
        assert proc.wait(timeout=30) is not None
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v1/models/affine", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_port_8500_moves_grpc_and_defaults_and_extra_flags(tmp_path):
    proc, argv = _run_entrypoint(
        tmp_path, {"PORT": "8500", "MODEL_NAME": "penguin"}, "--enable_batching"
    )
    assert proc.returncode == 0, proc.stderr
    assert argv == [
        "--port=8501",
        "--rest_api_port=8500",
        "--model_name=penguin",
        "--model_base_path=/models/penguin",
        "--enable_batching",
    ]  # no --host: tensorflow_model_server binds all interfaces and has no such flag

    proc, argv = _run_entrypoint(tmp_path, {"MODEL_NAME": "penguin"})
    assert argv[:2] == ["--port=8500", "--rest_api_port=8080"]  # Cloud Run's default $PORT

    proc, argv = _run_entrypoint(tmp_path, {"PORT": "9000", "MODEL_SERVER_HOST": "0.0.0.0"})
    assert argv[0] == "--host=0.0.0.0" and "--port=8500" in argv


def test_bad_port_fails_with_a_message(tmp_path):
    proc, _ = _run_entrypoint(tmp_path, {"PORT": "http"})
    assert proc.returncode == 64
    assert "port 'http' is not a number" in proc.stderr


def test_server_exit_code_is_the_container_exit_code(tmp_path):
    proc, _ = _run_entrypoint(tmp_path, {"PORT": "8080"}, body="exit 3")
    assert proc.returncode == 3
