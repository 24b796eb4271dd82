"""What ServingClient's calls give back: version states and Predict/Classify/Regress results."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    regression_pb2,
)

from tfx_serving_ext.protocol.errors import CODE_NUMBERS

CODE_NAMES = {number: name for name, number in CODE_NUMBERS.items()}
STATE_NAMES = {
    0: "UNKNOWN",
    10: "START",
    20: "LOADING",
    30: "AVAILABLE",
    40: "UNLOADING",
    50: "END",
}


@dataclass(frozen=True)
class VersionStatus:
    """One version's entry in GetModelStatus: state is START/LOADING/AVAILABLE/UNLOADING/END."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclass
class PredictResult:
    """Outputs of a Predict call as numpy arrays, and the version that answered.

    `version` is None over REST unless a version was requested (TF Serving's REST predict
    response does not say which version answered).
    """

    outputs: dict[str, np.ndarray]
    model_name: str
    signature_name: str
    version: int | None


@dataclass
class ClassifyResult:
    """Per example, the (label, score) pairs of a Classify call, and the answering version."""

    classes: list[list[tuple[str, float]]]
    version: int | None = None


@dataclass
class RegressResult:
    """Per example, the regression value of a Regress call, and the answering version."""

    values: list[float] = field(default_factory=list)
    version: int | None = None


def spec_version(spec) -> int | None:
    """Returns the version a ModelSpec names, or None when it names none."""
    return spec.version.value if spec.HasField("version") else None


def version_statuses(response: get_model_status_pb2.GetModelStatusResponse) -> list[VersionStatus]:
    """Returns the versions of a GetModelStatusResponse, newest first."""
    statuses = [
        VersionStatus(
            version=int(s.version),
            state=STATE_NAMES.get(s.state, "UNKNOWN"),
            error_code=CODE_NAMES.get(s.status.error_code, "UNKNOWN"),
            error_message=s.status.error_message,
        )
        for s in response.model_version_status
    ]
    return sorted(statuses, key=lambda s: s.version, reverse=True)


def classify_result(response: classification_pb2.ClassificationResponse) -> ClassifyResult:
    """Returns the (label, score) pairs per example of a ClassificationResponse."""
    return ClassifyResult(
        classes=[
            [(c.label, c.score) for c in row.classes] for row in response.result.classifications
        ],
        version=spec_version(response.model_spec),
    )


def regress_result(response: regression_pb2.RegressionResponse) -> RegressResult:
    """Returns the value per example of a RegressionResponse."""
    return RegressResult(
        values=[r.value for r in response.result.regressions],
        version=spec_version(response.model_spec),
    )
