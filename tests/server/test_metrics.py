"""`--monitoring_config_file`: TF Serving's Prometheus metrics on the REST port, by its names.

A dashboard or a post-push watch written against TF Serving reads
`:tensorflow:serving:request_count` and `:tensorflow:serving:request_latency`; the embedded server
must answer the same query with the same names, labels and meaning, counting gRPC and REST alike
and errors by their status code.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import inference_pb2

from tests.server.conftest import HPT, example, predict_log, publish, write_warmup
from tfx_serving_ext.client.client import ServingClient
from tfx_serving_ext.protocol.errors import ServingError
from tfx_serving_ext.server import ModelServer, ServerOptions
from tfx_serving_ext.server.metrics import (
    LATENCY_BUCKETS_USEC,
    MAX_MODEL_NAMES,
    OTHER_MODELS,
    ServingMetrics,
)

PATH = "/monitoring/prometheus/metrics"


def http(url: str, body: dict | None = None) -> tuple[int, str, str]:
    """Returns (status, content type, text) of a GET (or a POST of `body` as JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


_SAMPLE = re.compile(r"^([^\s{#]+)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(page: str) -> dict[tuple[str, tuple], float]:
    """Returns {(sample name as on the wire, sorted labels): value} of a Prometheus text page."""
    values = {}
    for line in page.splitlines():
        match = _SAMPLE.match(line)
        if match:
            name, labels, value = match.groups()
            values[(name, tuple(sorted(_LABEL.findall(labels or ""))))] = float(value)
    return values


def serve(base, monitoring: str = "", **options) -> ModelServer:
    config_file = ""
    if monitoring:
        config_file = str(base.parent / f"{base.name}.monitoring.pbtxt")
        with open(config_file, "w") as f:
            f.write(monitoring)
    server = ModelServer(
        ServerOptions(
            model_name=HPT,
            model_base_path=str(base),
            monitoring_config_file=config_file,
            wait_for_initial_models=True,
            **options,
        )
    )
    return server.start()


@pytest.fixture(scope="module")
def hpt_base(tmp_path_factory, half_plus_two_dir):
    base = tmp_path_factory.mktemp("metrics") / HPT
    publish(half_plus_two_dir, base, 123, name="00000123")
    return base


@pytest.fixture(scope="module")
def monitored(hpt_base):
    server = serve(hpt_base, "prometheus_config { enable: true }")
    try:
        yield server
    finally:
        server.stop()


def test_requests_over_both_apis_are_counted_by_tf_servings_names(monitored):
    with ServingClient(monitored.grpc_address) as grpc_client:
        for _ in range(2):
            grpc_client.predict(HPT, {"x": [1.0, 2.0]})
        grpc_client.classify(HPT, [example(x=2.0)] * 3, signature_name="classify_x_to_y")
        grpc_client.regress(HPT, [example(x=2.0)], signature_name="regress_x_to_y")
        multi = inference_pb2.MultiInferenceRequest()
        task = multi.tasks.add(method_name="tensorflow/serving/regress")
        task.model_spec.name = HPT
        task.model_spec.signature_name = "regress_x_to_y"
        multi.input.example_list.examples.extend([example(x=1.0), example(x=3.0)])
        grpc_client.raw_multi_inference(multi)
        with pytest.raises(ServingError):  # INVALID_ARGUMENT: the input is not the signature's
            grpc_client.predict(HPT, {"nope": [1.0]})
        with pytest.raises(ServingError):  # NOT_FOUND: no such model
            grpc_client.predict("missing", {"x": [1.0]})
    url = f"{monitored.rest_url}/v1/models/{HPT}"
    assert http(f"{url}:predict", {"instances": [1.0]})[0] == 200
    assert (
        http(f"{url}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]})[0]
        == 200
    )
    assert http(f"{url}:predict", {"signature_name": "nope", "instances": [1.0]})[0] == 400

    status, content_type, page = http(monitored.rest_url + PATH)
    assert status == 200 and content_type.startswith("text/plain")
    values = samples(page)
    # Standard tooling reads the page too (prometheus-client's parser, as Prometheus would).
    families = {f.name: f.type for f in text_string_to_metric_families(page)}
    assert families[":tensorflow:serving:request_latency"] == "histogram"
    assert families[":tensorflow:serving:request_count"] == "counter"

    def count(model: str, code: str) -> float:
        key = (":tensorflow:serving:request_count", (("model_name", model), ("status", code)))
        return values.get(key, 0)

    # 2 Predict + Classify + Regress + MultiInference over gRPC, Predict + Regress over REST.
    assert count(HPT, "OK") == 7
    assert count(HPT, "INVALID_ARGUMENT") == 1
    assert count(HPT, "FAILED_PRECONDITION") == 1  # REST's unknown signature
    assert count("missing", "NOT_FOUND") == 1

    def latency_count(api: str, entrypoint: str) -> float:
        labels = (("API", api), ("entrypoint", entrypoint), ("model_name", HPT))
        return values.get((":tensorflow:serving:request_latency_count", labels), 0)

    assert latency_count("Predict", "GRPC") == 2  # successful requests (and CANCELLED: below)
    assert latency_count("Classify", "GRPC") == 1
    assert latency_count("MultiInference", "GRPC") == 1
    assert latency_count("predict", "REST") == 1  # REST labels the URL's verb
    assert latency_count("regress", "REST") == 1
    runtime = (("API", "Predict"), ("model_name", HPT), ("runtime", "TF1"))
    assert values[(":tensorflow:serving:runtime_latency_count", runtime)] == 3
    examples = (":tensorflow:serving:request_example_count_total", (("model", HPT),))
    assert values[examples] == 3 + 1 + 2 + 1  # classify, regress, multi-inference, REST regress

    # The exact lines TF Serving's exporter writes: TYPE lines, no _total, labels in its order.
    lines = page.splitlines()
    assert "# TYPE :tensorflow:serving:request_count counter" in lines
    assert f':tensorflow:serving:request_count{{model_name="{HPT}",status="OK"}} 7' in lines
    assert "# TYPE :tensorflow:serving:request_latency histogram" in lines
    prefix = f':tensorflow:serving:request_latency_bucket{{model_name="{HPT}",API="Predict",'
    buckets = [line for line in lines if line.startswith(prefix + 'entrypoint="GRPC",')]
    assert len(buckets) == len(LATENCY_BUCKETS_USEC) + 1 == 34
    assert buckets[2].startswith(prefix + 'entrypoint="GRPC",le="32.4"} ')
    assert buckets[-1] == prefix + 'entrypoint="GRPC",le="+Inf"} 2'
    path = str(hpt_base_version(monitored))
    assert (
        f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{path}",status="success"}} 1'
        in lines
    )


def hpt_base_version(server: ModelServer):
    return server.core.manager(HPT).servable().path


def test_custom_path_and_servers_in_one_process_keep_their_own_counts(monitored, hpt_base):
    key = (":tensorflow:serving:request_count", (("model_name", HPT), ("status", "OK")))
    before = samples(http(monitored.rest_url + PATH)[2]).get(key, 0)
    other = serve(hpt_base, 'prometheus_config { enable: true path: "/metrics/tfs" }')
    try:
        with ServingClient(other.grpc_address) as client:
            client.predict(HPT, {"x": [1.0]})
        status, _, page = http(other.rest_url + "/metrics/tfs")
        assert status == 200
        assert samples(page)[key] == 1
        assert http(other.rest_url + PATH)[0] == 404  # only the configured path
    finally:
        other.stop()
    assert samples(http(monitored.rest_url + PATH)[2]).get(key, 0) == before


def test_without_the_flag_or_disabled_the_path_is_404(hpt_base, tmp_path):
    for monitoring in ("", "prometheus_config { enable: false }"):
        server = serve(hpt_base, monitoring)
        try:
            assert http(server.rest_url + PATH)[0] == 404
            assert http(f"{server.rest_url}/v1/models/{HPT}")[0] == 200
        finally:
            server.stop()


def test_a_config_file_that_does_not_parse_stops_start_up_naming_it(tmp_path, hpt_base):
    bad = tmp_path / "monitoring.pbtxt"
    bad.write_text("prometheus_config { enabled: true }")
    server = ModelServer(
        ServerOptions(
            model_name=HPT, model_base_path=str(hpt_base), monitoring_config_file=str(bad)
        )
    )
    with pytest.raises(ValueError) as info:
        server.start()
    message = str(info.value)
    assert "--monitoring_config_file" in message and str(bad) in message
    assert "tensorflow.serving.MonitoringConfig" in message and "enabled" in message


def test_invented_model_names_cannot_grow_the_page_and_odd_names_stay_parseable():
    metrics = ServingMetrics()
    odd = 'a "quoted"\\name\nwith a newline'
    metrics.record_request(odd, "Predict", "GRPC", "NOT_FOUND", 0.0)
    for i in range(MAX_MODEL_NAMES + 4):
        metrics.record_request(f"made-up-{i}", "Predict", "GRPC", "NOT_FOUND", 0.0)
    page = metrics.render()
    (family,) = [
        f for f in text_string_to_metric_families(page) if f.name.endswith("request_count")
    ]
    counts = {s.labels["model_name"]: s.value for s in family.samples}
    assert len(counts) == MAX_MODEL_NAMES + 1
    assert counts[odd] == 1
    assert counts[OTHER_MODELS] == 5


def test_a_versions_warmup_is_timed_by_its_path(tmp_path, half_plus_two_dir):
    base = tmp_path / HPT
    version = publish(half_plus_two_dir, base, 7)
    write_warmup(version, [predict_log({"x": [1.0, 2.0]})] * 3)
    server = serve(base, "prometheus_config { enable: true }")
    try:
        page = http(server.rest_url + PATH)[2]
    finally:
        server.stop()
    labels = (("model_path", str(version)), ("status", "OK"))
    assert samples(page)[(":tensorflow:serving:model_warmup_latency_count", labels)] == 1
    # Warmup requests are not client requests: TF Serving does not count them.
    assert ":tensorflow:serving:request_count{" not in page


def test_a_batched_predict_its_client_gave_up_on_is_counted_as_cancelled(tmp_path, hpt_base):
    """With batching, a Predict waits for its batch on the event loop; when the client's
    deadline passes first, the request is still counted (CANCELLED) and its wait timed, so a
    dashboard's or the post-push watch's p99 keeps the requests clients gave up on."""
    parameters = tmp_path / "batching.pbtxt"
    parameters.write_text("max_batch_size { value: 8 } batch_timeout_micros { value: 3000000 }")
    server = serve(
        hpt_base,
        "prometheus_config { enable: true }",
        enable_batching=True,
        batching_parameters_file=str(parameters),
        rest_api_port=0,
        enable_rest=True,
    )
    try:
        client = ServingClient(server.grpc_address, timeout=0.5)
        with client, pytest.raises(ServingError) as raised:
            client.predict(HPT, {"x": [1.0]})  # a lone request: its batch waits 3 s
        assert raised.value.code == "DEADLINE_EXCEEDED"
        labels = (("model_name", HPT), ("status", "CANCELLED"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            page = samples(http(server.rest_url + PATH)[2])
            if page.get((":tensorflow:serving:request_count", labels)):
                break
            time.sleep(0.1)
        assert page[(":tensorflow:serving:request_count", labels)] == 1
        latency = (
            ":tensorflow:serving:request_latency_count",
            (("API", "Predict"), ("entrypoint", "GRPC"), ("model_name", HPT)),
        )
        assert page[latency] == 1
    finally:
        server.stop()
