"""The artifact names Kubeflow Pipelines v2 / Vertex gave this task's artifacts, by TFX artifact id.

Under TFX's KFP v2 entrypoint (`kubeflow_v2_run_executor`) an artifact's `id` is not an MLMD id
but a hash of its runtime name (on Vertex `projects/P/locations/L/metadataStores/default/
artifacts/N`). The compiled LatestBlessedModelStrategy finds the blessed model with the filter
`name="<blessing's current_model_id>"`, so a blessing must name its model by that runtime name.
TFX converts the id back to the name only for Evaluator subclasses; the entrypoint keeps its
id-to-name table to itself, so this module rebuilds it from the same ExecutorInput (the
entrypoint's `--json_serialized_invocation_args`) with the same hash.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence

from tfx import types

INVOCATION_ARGS_FLAG = "--json_serialized_invocation_args"
_INT64_MAX = 1 << 63


def hashed_artifact_id(runtime_name: str) -> int:
    """Returns the id TFX's KFP v2 entrypoint gives the artifact named `runtime_name`."""
    return int(hashlib.sha256(runtime_name.encode("utf-8")).hexdigest(), 16) % _INT64_MAX


def _invocation_args(argv: Sequence[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg == INVOCATION_ARGS_FLAG and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(INVOCATION_ARGS_FLAG + "="):
            return arg[len(INVOCATION_ARGS_FLAG) + 1 :]
    return None


def runtime_artifact_names(argv: Sequence[str] | None = None) -> dict[int, str]:
    """Returns {hashed id: runtime name} of this task's artifacts; {} outside the v2 entrypoint."""
    raw = _invocation_args(sys.argv if argv is None else argv)
    if not raw:
        return {}
    try:
        executor_input = json.loads(raw)
    except ValueError:
        return {}
    names: dict[int, str] = {}
    for side in ("inputs", "outputs"):
        for artifact_list in (executor_input.get(side, {}).get("artifacts") or {}).values():
            for artifact in artifact_list.get("artifacts") or []:
                if artifact.get("name"):
                    names[hashed_artifact_id(artifact["name"])] = artifact["name"]
    return names


def set_artifact_reference(
    target: types.Artifact, key: str, artifact: types.Artifact, names: dict[int, str]
) -> None:
    """Records `artifact`'s identity on `target` as property `key`, as the orchestrator knows it.

    Under the KFP v2 entrypoint that is the runtime name (a string, what TFX writes for the
    Evaluator there); elsewhere MLMD's integer id. Nothing is written for an artifact without id
    (outside any orchestrator).
    """
    if artifact.id in names:
        target.set_string_custom_property(key, names[artifact.id])
    elif artifact.id:
        target.set_int_custom_property(key, artifact.id)
