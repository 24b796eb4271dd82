"""AllBlessed: one ModelBlessing that is blessed only when the Evaluator's and the validator's are.

Under LocalDagRunner the pipeline gives the pusher both blessings as one union channel.
`KubeflowV2DagRunner` compiles only single channels ("Only single Channel is supported."), so the
KFP v2 compile joins them in this component instead: its blessing carries the Evaluator's
properties (`current_model_id` names the model as the orchestrator does, which is what the
compiled LatestBlessedModelStrategy resolves the next run's baseline by), `blessed` 1 only when
both inputs are, the marker file `BLESSED` or `NOT_BLESSED` as the Evaluator writes it, and
`refused_by` naming the inputs that refused.
"""

# No `from __future__ import annotations`: TFX reads the signature's annotations as types.
from pathlib import Path

from tfx import v1 as tfx
from tfx.types.standard_artifacts import ModelBlessing

BLESSED_KEY = "blessed"
REFUSED_BY_KEY = "refused_by"


@tfx.dsl.components.component
def all_blessed(
    evaluator_blessing: tfx.dsl.components.InputArtifact[ModelBlessing],
    validator_blessing: tfx.dsl.components.InputArtifact[ModelBlessing],
    blessing: tfx.dsl.components.OutputArtifact[ModelBlessing],
) -> None:
    """Writes `blessing`: the Evaluator's verdict AND the SignatureValidator's."""
    for key, value in evaluator_blessing.mlmd_artifact.custom_properties.items():
        blessing.mlmd_artifact.custom_properties[key].CopyFrom(value)
    refused_by = [
        f"{name} ({artifact.uri})"
        for name, artifact in (
            ("Evaluator", evaluator_blessing),
            ("SignatureValidator", validator_blessing),
        )
        # As the stock Pusher reads a blessing: a missing property is 0, not blessed.
        if artifact.get_int_custom_property(BLESSED_KEY) != 1
    ]
    blessed = not refused_by
    blessing.set_int_custom_property(BLESSED_KEY, int(blessed))
    blessing.set_string_custom_property(REFUSED_BY_KEY, ", ".join(refused_by))
    Path(blessing.uri).mkdir(parents=True, exist_ok=True)
    (Path(blessing.uri) / ("BLESSED" if blessed else "NOT_BLESSED")).write_text("")
