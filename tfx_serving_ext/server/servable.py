"""A loaded model version: what the server knows of it (name, version, path) and its runner.

How a request is answered (signature lookup, input and output checks, the context/example
merge, status codes) is `checks.model_runner.LocalModel`'s job, shared with the warmup writer
and the validator so that all three mean the same thing by a request; the servable adds the
version that answered.
"""

from __future__ import annotations

import os
from pathlib import Path

from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from tfx_serving_ext.checks.model_runner import LocalModel
from tfx_serving_ext.protocol.saved_model import SERVE_TAG
from tfx_serving_ext.protocol.signatures import DEFAULT_SIGNATURE

__all__ = ["DEFAULT_SIGNATURE", "Servable"]


class Servable:
    """One loaded version of a model, answering Predict / Classify / Regress / MultiInference.

    Thread-safe: requests run concurrently on the same concrete functions. A request holds a
    reference to the Servable it started on, so unloading a version never cuts it short.
    """

    def __init__(self, name: str, version: int, path: Path, model: LocalModel):
        self.name = name
        self.version = version
        self.path = path
        self.model = model

    @property
    def signature_defs(self) -> dict[str, meta_graph_pb2.SignatureDef]:
        """Returns the version's SignatureDefs by name (GetModelMetadata's answer)."""
        return self.model.signature_defs

    @classmethod
    def load(
        cls,
        name: str,
        version: int,
        path: str | os.PathLike,
        *,
        method_name_check: bool = True,
    ) -> Servable:
        """Returns the SavedModel at `path` loaded with the 'serve' tag.

        Args:
            name: the model's name.
            version: the version this directory is.
            path: the version directory.
            method_name_check: TF Serving's --enable_signature_method_name_check.

        Raises:
            ServingError: the directory is missing, incomplete or not a loadable SavedModel.
        """
        path = Path(path)
        model = LocalModel(path, (SERVE_TAG,), method_name_check=method_name_check)
        return cls(name, version, path, model)

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Returns the PredictResponse for `request`, run on this version."""
        return self.model.predict(request, self.version)

    def classify(
        self, request: classification_pb2.ClassificationRequest
    ) -> classification_pb2.ClassificationResponse:
        """Returns the ClassificationResponse for the tf.Examples in `request`."""
        return self.model.classify(request, self.version)

    def regress(
        self, request: regression_pb2.RegressionRequest
    ) -> regression_pb2.RegressionResponse:
        """Returns the RegressionResponse for the tf.Examples in `request`."""
        return self.model.regress(request, self.version)

    def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest
    ) -> inference_pb2.MultiInferenceResponse:
        """Returns one Classify/Regress result per task, all run on the same examples."""
        return self.model.multi_inference(request, self.version)
