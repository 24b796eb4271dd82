"""Server-side batching (--enable_batching) on a real embedded server on loopback.

The counting model adds 1 to a variable each time a batch runs and the batch's rows to another,
and its `stats` signature reads both: so a test sees how many times the model really ran and on
how many rows (padding included), not what the scheduler says of itself. Each model of the
server has its own batching_params.pbtxt (--enable_per_model_batching_parameters).
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.server.conftest import example, publish
from tfx_serving_ext.client.client import ServingClient, ServingError
from tfx_serving_ext.server import ModelServer, ServerOptions
from tfx_serving_ext.server.batching import BatchingParametersError

REPO = Path(__file__).resolve().parents[2]

# Each model's batching_params.pbtxt.
PARAMETERS = {
    # Fills up before its long timeout: a full batch runs at once.
    "full": "max_batch_size { value: 8 } batch_timeout_micros { value: 20000000 } "
    "allowed_batch_sizes: 4 allowed_batch_sizes: 8",
    # A partial batch runs when its first request has waited 1 s, padded up to 4 rows.
    "flush": "max_batch_size { value: 8 } batch_timeout_micros { value: 1000000 } "
    "allowed_batch_sizes: 4 allowed_batch_sizes: 8",
    "padded": "max_batch_size { value: 4 } batch_timeout_micros { value: 1000000 } "
    "pad_variable_length_inputs: true",
    "split": "max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
    "max_execution_batch_size { value: 4 }",
    "tight": "max_batch_size { value: 2 } batch_timeout_micros { value: 4000000 } "
    "max_enqueued_batches { value: 1 }",
}
SERVER_PARAMETERS = "max_batch_size { value: 16 } batch_timeout_micros { value: 20000 } " + (
    "num_batch_threads { value: 2 }"
)


@pytest.fixture(scope="module")
def counting_model_dir(tmp_path_factory) -> Path:
    """A TF2 model counting the batches it runs and their rows; `stats` reads the counts."""
    import tensorflow as tf

    class Counting(tf.Module):
        def __init__(self):
            super().__init__()
            self.calls = tf.Variable(0, dtype=tf.int64)
            self.rows = tf.Variable(0, dtype=tf.int64)

        def _count(self, batch):
            self.calls.assign_add(1)
            self.rows.assign_add(tf.cast(tf.shape(batch)[0], tf.int64))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            self._count(x)
            return {"y": x * 0.5 + 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64, name="tokens")])
        def lengths(self, tokens):
            self._count(tokens)
            rows, width = tf.shape(tokens)[0], tf.cast(tf.shape(tokens)[1], tf.int64)
            return {"total": tf.reduce_sum(tokens, axis=1), "width": tf.fill([rows], width)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="probe")])
        def stats(self, probe):
            shape = tf.shape(probe)
            return {"calls": tf.fill(shape, self.calls), "rows": tf.fill(shape, self.rows)}

    module = Counting()
    path = tmp_path_factory.mktemp("counting_model") / "saved_model"
    signatures = {"serving_default": module.predict, "lengths": module.lengths}
    signatures["stats"] = module.stats
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, counting_model_dir, penguin_model_dir, half_plus_two_dir):
    """One server, batching on: the counting model under each PARAMETERS name, penguin, and
    half_plus_two (a TF1 graph, run in a Session) with the server's parameters."""
    root = tmp_path_factory.mktemp("batching")
    configs = []
    for name, text in PARAMETERS.items():
        version_dir = publish(counting_model_dir, root / name, 1)
        (version_dir / "batching_params.pbtxt").write_text(text)
        configs.append(f'config {{ name: "{name}" base_path: "{root / name}" }}')
    for name, model_dir in (("penguin", penguin_model_dir), ("hpt", half_plus_two_dir)):
        publish(model_dir, root / name, 1)
        configs.append(f'config {{ name: "{name}" base_path: "{root / name}" }}')
    config_file = root / "models.config"
    config_file.write_text("model_config_list {\n" + "\n".join(configs) + "\n}\n")
    parameters_file = root / "batching.pbtxt"
    parameters_file.write_text(SERVER_PARAMETERS)
    options = ServerOptions(
        model_config_file=str(config_file),
        enable_batching=True,
        batching_parameters_file=str(parameters_file),
        enable_per_model_batching_parameters=True,
        wait_for_initial_models=True,
        initial_models_timeout_seconds=120,
    )
    with ModelServer(options) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with ServingClient(server.grpc_address, timeout=60) as grpc_client:
        yield grpc_client


def _stats(client: ServingClient, model: str, rows: int) -> tuple[int, int]:
    """Returns (batches run, rows run) so far; `rows` fills the model's batch so it runs now."""
    outputs = client.predict(model, {"probe": [0.0] * rows}, signature_name="stats").outputs
    return int(outputs["calls"][0]), int(outputs["rows"][0])


def _concurrently(calls: list) -> list:
    """Returns the results of the calls run at once (one thread each), exceptions included."""

    def run(call):
        started = time.monotonic()
        try:
            return call(), time.monotonic() - started
        except ServingError as exc:
            return exc, time.monotonic() - started

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_requests_run_as_one_batch_and_each_gets_its_own_answer(server, client):
    before = _stats(client, "full", 8)
    rest = ServingClient(server.rest_url, protocol="rest", timeout=60)
    inputs = [[1.0], [2.0], [3.0], [4.0], [5.0], [6.0, 7.0]]  # 8 rows: one full batch
    calls = [
        (lambda c=(rest if i % 2 else client), x=x: c.predict("full", {"x": x}))
        for i, x in enumerate(inputs)
    ]
    calls.append(lambda: client.predict("full", {"x": [-2.0]}))
    results = _concurrently(calls)
    rest.close()
    for x, (result, seconds) in zip([*inputs, [-2.0]], results, strict=True):
        assert not isinstance(result, Exception), result
        assert result.outputs["y"].tolist() == [v * 0.5 + 2.0 for v in x]
        assert seconds < 20  # a full batch does not wait for its 20 s timeout
    after = _stats(client, "full", 8)
    assert after[0] - before[0] == 1, "7 requests should have run the model once"
    assert after[1] - before[1] == 8


def test_requests_waiting_for_their_batch_hold_no_grpc_thread(tmp_path, counting_model_dir):
    """With one gRPC worker thread (--grpc_max_threads=1), 8 concurrent Predicts still meet in
    one batch: a request waits for its batch on the server's event loop, not in a thread. (A
    server whose waiting requests each held a thread would run them one at a time, each
    waiting out the 20 s timeout.) A request over the loop's size bound goes to the worker
    thread and is answered from the batch queue as well."""
    version_dir = publish(counting_model_dir, tmp_path / "counting", 1)
    (version_dir / "batching_params.pbtxt").write_text(
        "max_batch_size { value: 8 } batch_timeout_micros { value: 20000000 }"
    )
    options = ServerOptions(
        model_name="counting",
        model_base_path=str(tmp_path / "counting"),
        enable_batching=True,
        enable_per_model_batching_parameters=True,
        grpc_max_workers=1,
        wait_for_initial_models=True,
        initial_models_timeout_seconds=120,
    )
    with ModelServer(options) as server, ServingClient(server.grpc_address, timeout=60) as client:
        xs = [float(i) for i in range(8)]
        results = _concurrently([(lambda x=x: client.predict("counting", {"x": [x]})) for x in xs])
        for x, (result, seconds) in zip(xs, results, strict=True):
            assert not isinstance(result, Exception), result
            assert result.outputs["y"].tolist() == [x * 0.5 + 2.0]
            assert seconds < 20, "a request waited out the batch timeout"
        assert _stats(client, "counting", 8) == (1, 8), "8 requests should make one batch"

        # 40,000 int64 tokens: 320 KB, decoded in the worker thread, run in one batch of 8 rows.
        tokens = np.arange(40_000, dtype=np.int64).reshape(8, 5_000)
        outputs = client.predict("counting", {"tokens": tokens}, signature_name="lengths").outputs
        assert outputs["total"].tolist() == tokens.sum(axis=1).tolist()
        assert _stats(client, "counting", 8) == (2, 16)


def test_a_partial_batch_runs_at_its_timeout_padded_to_an_allowed_size(client):
    before = _stats(client, "flush", 8)
    results = _concurrently(
        [lambda x=x: client.predict("flush", {"x": [x]}) for x in (10.0, 20.0, 30.0)]
    )
    for x, (result, seconds) in zip((10.0, 20.0, 30.0), results, strict=True):
        assert result.outputs["y"].tolist() == [x * 0.5 + 2.0]
        assert 0.9 <= seconds < 15, seconds  # waited for the 1 s timeout, not forever
    after = _stats(client, "flush", 8)
    assert after[0] - before[0] == 1
    assert after[1] - before[1] == 4  # 3 rows padded up to allowed_batch_sizes' 4


def test_inputs_of_other_shapes_run_apart_unless_padding_is_on(client):
    requests = [[[1, 2]], [[3, 4, 5]]]
    for model, full, widths, totals, batches in (
        ("flush", 8, [2, 3], [3, 12], 2),
        # Padded with each tensor's first element (1), as TF Serving's AddPadding.
        ("padded", 4, [3, 3], [4, 12], 1),
    ):
        before = _stats(client, model, full)
        results = _concurrently(
            [
                lambda t=t, m=model: client.predict(m, {"tokens": t}, signature_name="lengths")
                for t in requests
            ]
        )
        assert [r.outputs["width"].tolist() for r, _ in results] == [[w] for w in widths], model
        assert [r.outputs["total"].tolist() for r, _ in results] == [[t] for t in totals], model
        assert _stats(client, model, full)[0] - before[0] == batches, model


def test_a_large_request_is_split_across_batches_when_splitting_is_on(client):
    before = _stats(client, "split", 4)
    x = [float(v) for v in range(7)]
    assert client.predict("split", {"x": x}).outputs["y"].tolist() == [v * 0.5 + 2.0 for v in x]
    after = _stats(client, "split", 4)
    assert (after[0] - before[0], after[1] - before[1]) == (2, 7)  # 4 rows, then 3


def test_too_large_and_queue_full_are_refused_as_tf_serving_does(client):
    with pytest.raises(ServingError, match="Task size 3 is larger than maximum input batch size 2"):
        client.predict("tight", {"x": [1.0, 2.0, 3.0]})
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.predict, "tight", {"x": [1.0]})  # open batch, 4 s timeout
        time.sleep(1.0)
        with pytest.raises(ServingError) as refused:
            client.predict("tight", {"x": [2.0, 3.0]})  # needs a 2nd batch; 1 allowed
        assert refused.value.code == "UNAVAILABLE"
        assert "queue to which this task was submitted is full" in refused.value.message
        assert waiting.result(timeout=30).outputs["y"].tolist() == [2.5]


def test_penguin_answers_batched_equal_unbatched(client, penguin_model_dir, penguin_examples):
    import tensorflow as tf

    from tfx_serving_ext.checks.model_runner import LocalModel

    chosen = penguin_examples[:12]
    batches = [[e.SerializeToString()] for e in chosen[:9]] + [
        [e.SerializeToString() for e in chosen[9:]]
    ]
    results = _concurrently(
        [
            lambda b=b: client.predict("penguin", {"examples": np.array(b, dtype=object)})
            for b in batches
        ]
    )
    unbatched = LocalModel(penguin_model_dir).signatures["serving_default"]
    for batch, (result, _) in zip(batches, results, strict=True):
        expected = unbatched(examples=tf.constant(batch))
        assert set(result.outputs) == set(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(result.outputs[name], value.numpy(), rtol=1e-5)


def test_classify_and_regress_run_batched_with_each_callers_answer(client):
    groups = [[1.0], [2.0, 3.0], [4.0], [5.0, 6.0, 7.0], [8.0]]
    calls = []
    for xs in groups:
        examples = [example(x=x) for x in xs]
        calls.append(lambda e=examples: client.classify("hpt", e, signature_name="classify_x_to_y"))
        calls.append(lambda e=examples: client.regress("hpt", e, signature_name="regress_x_to_y"))
    results = _concurrently(calls)
    for index, (result, _) in enumerate(results):
        xs = groups[index // 2]
        if index % 2 == 0:
            assert result.classes == [[("", x * 0.5 + 2.0)] for x in xs]
        else:
            assert result.values == [x * 0.5 + 2.0 for x in xs]


def test_enable_batching_without_a_file_takes_tf_servings_defaults():
    import os

    from tfx_serving_ext.server.batching import ServerBatching

    batching = ServerBatching.from_options(ServerOptions(enable_batching=True))
    try:
        defaults = batching.parameters
        # SharedBatchScheduler's QueueOptions and Options defaults.
        assert (defaults.max_batch_size, defaults.batch_timeout_micros) == (1000, 0)
        assert defaults.max_enqueued_batches == 10
        assert defaults.num_batch_threads == os.cpu_count()
        assert defaults.allowed_batch_sizes == () and not defaults.pad_variable_length_inputs
    finally:
        batching.stop()
    assert ServerBatching.from_options(ServerOptions()) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_batch_size { value: 8 }\nbatch_timeout_micro { value: 5 }", "batch_timeout_micro"),
        (
            "max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 16",
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 16; "
            "expected 8",
        ),
        (
            "max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 2 "
            "allowed_batch_sizes: 8",
            "allowed_batch_sizes entries must be monotonically increasing",
        ),
        ("num_batch_threads { value: 0 }", "num_batch_threads must be positive; was 0"),
        ("max_batch_size: 8", "max_batch_size"),
    ],
)
def test_bad_parameters_file_stops_the_start_naming_the_field(tmp_path, text, message):
    path = tmp_path / "batching.pbtxt"
    path.write_text(text)
    options = ServerOptions(
        model_name="m",
        model_base_path=str(tmp_path / "models"),
        enable_batching=True,
        batching_parameters_file=str(path),
    )
    with pytest.raises(BatchingParametersError) as error:
        ModelServer(options).start()
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_serve_exits_non_zero_on_a_bad_parameters_file(tmp_path):
    path = tmp_path / "batching.pbtxt"
    path.write_text("max_batch_size { value: 8 }\nbatch_timeout { value: 5 }\n")
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfx_serving_ext.cli",
            "--log-file",
            str(tmp_path / "serve.log"),
            "serve",
            "--port=0",
            "--model_name=m",
            f"--model_base_path={tmp_path}",
            "--enable_batching",
            f"--batching_parameters_file={path}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
    )
    assert finished.returncode == 1
    assert "batch_timeout" in finished.stdout + finished.stderr
    assert "Running gRPC ModelServer" not in finished.stdout


def test_padding_strings_keeps_their_bytes_whole():
    """pad_variable_length_inputs pads a string tensor with its first element as TF Serving
    does, byte for byte: a serialized proto ending in NUL bytes stays whole (NumPy's own
    padding would turn it into np.bytes_ and drop them)."""
    from tfx_serving_ext.server.batch_scheduler import _pad_to_largest

    short = np.array([[b"ab\x00"]], dtype=object)
    wide = np.array([[b"x", b"y\x00\x00", b"z"]], dtype=object)
    padded_short, padded_wide = _pad_to_largest([short, wide])
    assert padded_short.tolist() == [[b"ab\x00", b"ab\x00", b"ab\x00"]]
    assert padded_wide is wide
    assert all(type(v) is bytes for v in padded_short.flat)
