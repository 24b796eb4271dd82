"""Canary fixtures: penguin variants that are slow, disagree, fail to load or load too slowly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def _wrap_penguin(penguin_dir: Path, export_dir: Path, mode: str) -> Path:
    """Saves a model whose serving_default calls the penguin model, altered by `mode`."""
    import tensorflow as tf
    from tensorflow.python.data.experimental.ops import testing as tf_data_testing

    inner = tf.saved_model.load(str(penguin_dir))
    input_name = "inputs" if mode == "renamed" else "examples"

    class Wrapped(tf.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=input_name)])
        def serve(self, serialized):
            probabilities = self.inner.signatures["serving_default"](examples=serialized)[
                "probabilities"
            ]
            if mode == "slow":  # a real graph op that sleeps 30 ms per call
                dataset = tf.data.Dataset.from_tensors(probabilities).apply(
                    tf_data_testing.sleep(30_000)
                )
                probabilities = dataset.get_single_element()
            elif mode == "disagree":  # every example's top class moves to the next class
                probabilities = tf.roll(probabilities, shift=1, axis=1)
            return {"probabilities": probabilities}

    module = Wrapped()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})
    return export_dir


def _write_warmup(model_dir: Path, records: list[bytes], count: int) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    extra = model_dir / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        for index in range(count):
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = "serving_default"
            request.inputs["examples"].CopyFrom(
                tf.make_tensor_proto([records[index % len(records)]], dtype=tf.string)
            )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


@pytest.fixture(scope="session")
def penguin_records(penguin_examples) -> list[bytes]:
    """60 serialized penguin tf.Examples (both classes of every species among them)."""
    return [e.SerializeToString() for e in penguin_examples[::5][:60]]


@pytest.fixture(scope="session")
def canary_models(penguin_model_dir, penguin_records, tmp_path_factory) -> dict[str, Path]:
    """Candidate variants of the penguin model, built once per session.

    - slow: 30 ms sleep per call; disagree: top class rotated; renamed: the input is called
      `inputs` (a different signature); broken: garbage saved_model.pb; slow_loading: the slow
      model with 80 warmup records (5 s or more to load).
    """
    root = tmp_path_factory.mktemp("canary_models")
    models = {"good": Path(penguin_model_dir)}
    for mode in ("slow", "disagree", "renamed"):
        models[mode] = _wrap_penguin(Path(penguin_model_dir), root / mode, mode)
    broken = root / "broken"
    shutil.copytree(penguin_model_dir, broken)
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    models["broken"] = broken
    slow_loading = root / "slow_loading"
    shutil.copytree(models["slow"], slow_loading)
    _write_warmup(slow_loading, penguin_records, 80)
    models["slow_loading"] = slow_loading
    return models


def child_pids() -> set[int]:
    """Returns the pids of this process's live children (from /proc)."""
    me = os.getpid()
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me and fields[0] != "Z":
            children.add(int(entry.name))
    return children


def listening_ports() -> set[int]:
    """Returns the TCP ports this process listens on (sockets in /proc/self/fd, LISTEN state)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.fixture(autouse=True)
def no_server_survives():
    """Fails a test that leaves a model server running: a child process or a listening port."""
    processes, ports = child_pids(), listening_ports()
    yield
    leaked = child_pids() - processes
    assert not leaked, f"processes left running after the test: {sorted(leaked)}"
    open_ports = listening_ports() - ports
    assert not open_ports, f"ports still listening after the test: {sorted(open_ports)}"
