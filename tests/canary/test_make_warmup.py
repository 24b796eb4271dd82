"""RequestSpec.make_warmup as in InfraValidator: the blessing carries the warmed model, pushed.

The canary runs on the embedded server (loopback); the stock TFX Pusher and ServingPusher then
push from the blessing alone, and what lands on the serving volume holds the warmup file with
the canary's requests.
"""

from __future__ import annotations

import json
from pathlib import Path

from tfx.components.pusher import executor as stock_pusher
from tfx.proto import infra_validator_pb2, pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from tests.support.tfx_testdata import artifact
from tfx_serving_ext.checks.warmup import load_warmup_requests, warmup_file_path
from tfx_serving_ext.components.serving_canary import executor as canary
from tfx_serving_ext.components.serving_pusher import executor as pusher

SMALL_RUN = {"backend": "embedded", "num_requests": 10, "num_examples": 6, "unmeasured_requests": 1}


def _examplesartifact(records: list[bytes], root: Path):
    import tensorflow as tf

    split = root / "Split-eval"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data.gz"), options="GZIP") as writer:
        for record in records:
            writer.write(record)
    return artifact(standard_artifacts.Examples, root, split_names='["eval"]')


def _run_canary(tmp_path: Path, model_dir: Path, records: list[bytes], *, make_warmup: bool):
    blessing = artifact(standard_artifacts.InfraBlessing, tmp_path / "blessing")
    request_spec = infra_validator_pb2.RequestSpec(make_warmup=make_warmup)
    request_spec.tensorflow_serving.SetInParent()
    context = canary.Executor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="canary")
    canary.Executor(context).Do(
        {
            canary.MODEL_KEY: [artifact(standard_artifacts.Model, model_dir)],
            canary.EXAMPLES_KEY: [_examplesartifact(records, tmp_path / "examples")],
        },
        {canary.BLESSING_KEY: [blessing]},
        {
            canary.CANARY_CONFIG_KEY: json.dumps(SMALL_RUN),
            canary.REQUEST_SPEC_KEY: proto_utils.proto_to_json(request_spec),
        },
    )
    return blessing


def test_blessing_carries_the_warmed_model_and_both_pushers_push_it(
    canary_models, penguin_records, tmp_path
):
    model_dir = canary_models["good"]
    assert not warmup_file_path(model_dir).exists()  # the candidate has no warmup file
    blessing = _run_canary(tmp_path, model_dir, penguin_records, make_warmup=True)
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_int_custom_property("has_model") == 1
    stamped = tmp_path / "blessing" / "stamped_model"
    records = load_warmup_requests(warmup_file_path(stamped))
    assert len(records) == 6  # one per distinct example the canary sent
    assert {r.signature_name for r in records} == {"serving_default"}
    assert not warmup_file_path(model_dir).exists()  # the input model is left as it was

    # The stock Pusher, given only the blessing (InfraValidator's documented wiring).
    stock_pushed = artifact(standard_artifacts.PushedModel, tmp_path / "stock_pushed")
    destination = pusher_pb2.PushDestination()
    destination.filesystem.base_directory = str(tmp_path / "stock_serving")
    stock_pusher.Executor().Do(
        {"infra_blessing": [blessing]},
        {"pushed_model": [stock_pushed]},
        {"push_destination": proto_utils.proto_to_json(destination)},
    )
    assert stock_pushed.get_int_custom_property("pushed") == 1
    [version_dir] = (tmp_path / "stock_serving").iterdir()
    assert len(load_warmup_requests(warmup_file_path(version_dir))) == 6

    # ServingPusher, given the model and the blessing: the blessing's warmed model wins.
    ours = artifact(standard_artifacts.PushedModel, tmp_path / "pushed")
    Path(ours.uri).mkdir()
    base = tmp_path / "serving" / "penguin"
    pusher.Executor().Do(
        {"model": [artifact(standard_artifacts.Model, model_dir)], "infra_blessing": [blessing]},
        {"pushed_model": [ours]},
        {
            "destination": "serving_volume",
            "push_destination": json.dumps({"base_directory": str(base), "model_name": "penguin"}),
        },
    )
    assert ours.get_int_custom_property("pushed") == 1
    assert len(load_warmup_requests(warmup_file_path(base / "1"))) == 6


def test_a_refused_model_gets_no_warmed_model_and_without_make_warmup_none_is_written(
    canary_models, penguin_records, tmp_path
):
    refused = _run_canary(
        tmp_path / "refused", canary_models["broken"], penguin_records, make_warmup=True
    )
    assert refused.get_int_custom_property("blessed") == 0
    assert refused.get_int_custom_property("has_model") == 0
    assert not (tmp_path / "refused" / "blessing" / "stamped_model").exists()

    plain = _run_canary(
        tmp_path / "plain", canary_models["good"], penguin_records, make_warmup=False
    )
    assert plain.get_int_custom_property("blessed") == 1
    assert plain.get_int_custom_property("has_model") == 0
    assert not (tmp_path / "plain" / "blessing" / "stamped_model").exists()
