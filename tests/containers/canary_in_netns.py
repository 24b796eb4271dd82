"""The ServingCanary executor on the Docker backend, run inside the engine's network namespace.

The ports a container publishes on 127.0.0.1 exist only in the engine's namespace, so the
executor runs in a child Python there (`DockerEngine.run_in_netns`):

    python -m tests.containers.canary_in_netns '{"model_uri": ..., ...}' RESULT.json

It writes the blessing's custom properties and the report as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def run_canary_executor(
    *,
    model_uri: str,
    examples_uri: str,
    blessing_uri: str,
    tmp_dir: str,
    serving_spec_json: str,
    canary_config: dict[str, Any],
) -> dict[str, Any]:
    """Returns the blessing's custom properties and report.json after ServingCanary's Do."""
    from tfx.types import standard_artifacts

    from tfx_serving_ext.components.serving_canary import executor as canary

    model = standard_artifacts.Model()
    model.uri = model_uri
    examples = standard_artifacts.Examples()
    examples.uri = examples_uri
    examples.split_names = '["eval"]'
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = blessing_uri
    context = canary.Executor.Context(tmp_dir=tmp_dir, unique_id="canary")
    canary.Executor(context).Do(
        {canary.MODEL_KEY: [model], canary.EXAMPLES_KEY: [examples]},
        {canary.BLESSING_KEY: [blessing]},
        {
            canary.SERVING_SPEC_KEY: serving_spec_json,
            canary.VALIDATION_SPEC_KEY: json.dumps(
                {"max_loading_time_seconds": 180, "num_tries": 1}
            ),
            canary.CANARY_CONFIG_KEY: json.dumps(canary_config),
        },
    )
    properties = {
        name: value.string_value if value.HasField("string_value") else value.int_value
        for name, value in blessing.mlmd_artifact.custom_properties.items()
    }
    report = json.loads((Path(blessing_uri) / "report.json").read_text())
    report.pop("requests", None)  # every request's record: large, and not what is checked
    return {"properties": properties, "report": report}


def main(argv: list[str]) -> int:
    """Runs `run_canary_executor(**json.loads(KWARGS))` and writes its JSON result to RESULT."""
    kwargs_json, result_path = argv
    result = run_canary_executor(**json.loads(kwargs_json))
    Path(result_path).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
