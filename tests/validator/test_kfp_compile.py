"""Both components compile for Kubeflow Pipelines v2 with their parameters as plain values."""

from __future__ import annotations

import json


def test_components_compile_with_kubeflow_v2_dag_runner(tmp_path):
    from tfx.components import CsvExampleGen
    from tfx.dsl.components.common.importer import Importer
    from tfx.orchestration import pipeline
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kfp_v2
    from tfx.types import standard_artifacts

    from tfx_serving_ext import SignatureValidator, WarmupRequestWriter

    example_gen = CsvExampleGen(input_base="gs://bucket/data")
    model = Importer(source_uri="gs://bucket/model", artifact_type=standard_artifacts.Model)
    validator = SignatureValidator(
        model=model.outputs["result"],
        examples=example_gen.outputs["examples"],
        contract={"serving_default": {"method": "predict"}},
    )
    warmup = WarmupRequestWriter(
        model=model.outputs["result"], examples=example_gen.outputs["examples"], num_examples=7
    ).with_beam_pipeline_args(["--runner=DataflowRunner"])
    runner = kfp_v2.KubeflowV2DagRunner(
        config=kfp_v2.KubeflowV2DagRunnerConfig(default_image="gcr.io/p/image"),
        output_dir=str(tmp_path),
        output_filename="pipeline.json",
    )
    runner.run(
        pipeline.Pipeline(
            pipeline_name="compile-check",
            pipeline_root="gs://bucket/root",
            components=[example_gen, model, validator, warmup],
        )
    )
    spec = json.loads((tmp_path / "pipeline.json").read_text())["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    args = executors["WarmupRequestWriter_executor"]["container"]["args"]
    assert "tfx_serving_ext.components.warmup_request_writer.executor.Executor" in args
    assert "--runner=DataflowRunner" in args

    def constant(task: str, name: str):
        value = spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]
        return value["runtimeValue"]["constantValue"]

    contract = json.loads(constant("SignatureValidator", "contract")["stringValue"])
    assert contract["signatures"]["serving_default"]["method"] == "tensorflow/serving/predict"
    assert constant("WarmupRequestWriter", "num_examples") == {"intValue": "7"}
