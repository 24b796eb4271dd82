"""The WarmupRequestWriter executor: Beam sampling, the file it ships, and what stops it."""

from __future__ import annotations

import json

import pytest
from tfx.types import standard_artifacts

from tfx_serving_ext.checks.warmup import (
    MAX_WARMUP_RECORDS,
    WarmupReplayError,
    build_warmup_model,
    read_warmup_file,
    warmup_file_path,
)
from tfx_serving_ext.components.warmup_request_writer import executor as writer
from tfx_serving_ext.testing.toy_models import make_examples

NUM_SORTED_EXAMPLES = 400  # as in conftest.sorted_examples_uri


def _run(model_uri, examples_uri, output_uri, **exec_properties):
    model = standard_artifacts.Model()
    model.uri = str(model_uri)
    examples = standard_artifacts.Examples()
    examples.uri = str(examples_uri)
    examples.split_names = json.dumps(["train", "eval"])
    output = standard_artifacts.Model()
    output.uri = str(output_uri)
    writer.Executor().Do(
        {writer.MODEL_KEY: [model], writer.EXAMPLES_KEY: [examples]},
        {writer.OUTPUT_MODEL_KEY: [output]},
        exec_properties,
    )
    return output


def _index(example) -> int:
    return example.features.feature["index"].int64_list.value[0]


def test_writer_ships_a_copy_with_prediction_logs_sampled_from_the_whole_split(
    warmup_models, sorted_examples_uri, fresh_output
):
    output = _run(
        warmup_models["half_plus_two"],
        sorted_examples_uri,
        fresh_output,
        **{writer.NUM_EXAMPLES_KEY: 20},
    )
    serving_dir = fresh_output / "Format-Serving"
    assert (serving_dir / "saved_model.pb").is_file()
    assert (serving_dir / "variables").is_dir()
    logs = read_warmup_file(warmup_file_path(serving_dir))
    kinds = [log.WhichOneof("log_type") for log in logs]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "classify_log": 20,
        "regress_log": 20,
        "predict_log": 20,
    }
    assert output.get_int_custom_property("warmup_records") == 60
    for name in ("classify_x_to_y", "regress_x_to_y", "serving_default"):
        assert output.get_int_custom_property(f"warmup_records_{name}") == 20
    # Sampled uniformly from the eval split (sorted by index), not its first 20 records.
    indices = sorted(
        _index(log.classify_log.request.input.example_list.examples[0])
        for log in logs
        if log.HasField("classify_log")
    )
    assert len(set(indices)) == 20
    assert indices != list(range(20))
    assert max(indices) >= NUM_SORTED_EXAMPLES // 2
    assert sum(i >= NUM_SORTED_EXAMPLES // 2 for i in indices) >= 3


def test_signature_names_restrict_the_records(warmup_models, sorted_examples_uri, fresh_output):
    output = _run(
        warmup_models["toy"],
        sorted_examples_uri,
        fresh_output,
        **{
            writer.NUM_EXAMPLES_KEY: 5,
            writer.SIGNATURE_NAMES_KEY: json.dumps(["predict_xw"]),
            writer.SPLIT_KEY: "train",
        },
    )
    logs = read_warmup_file(fresh_output / "Format-Serving")
    assert {log.predict_log.request.model_spec.signature_name for log in logs} == {"predict_xw"}
    assert len(logs) == 5 and output.get_int_custom_property("warmup_records") == 5


def test_failing_warmup_request_stops_the_writer(warmup_models, sorted_examples_uri, fresh_output):
    with pytest.raises(WarmupReplayError, match="x must be negative") as caught:
        _run(
            warmup_models["fails"],
            sorted_examples_uri,
            fresh_output,
            **{writer.NUM_EXAMPLES_KEY: 3},
        )
    assert "TF Serving would refuse to load this version" in str(caught.value)
    assert not warmup_file_path(fresh_output / "Format-Serving").exists()


def test_never_more_than_1000_records(warmup_models, tmp_path):
    result = build_warmup_model(
        warmup_models["half_plus_two"],
        tmp_path / "out",
        make_examples([float(i) for i in range(700)]),
    )
    assert result.total_records <= MAX_WARMUP_RECORDS
    assert set(result.records_per_signature.values()) == {MAX_WARMUP_RECORDS // 3}
    assert len(read_warmup_file(result.warmup_file)) == result.total_records
