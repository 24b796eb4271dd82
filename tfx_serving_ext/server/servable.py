"""A loaded model version: what the server knows of it (name, version, path) and its runner.

How a request is answered (signature lookup, input and output checks, the context/example
merge, status codes) is `checks.model_runner.LocalModel`'s job, shared with the warmup writer
and the validator so that all three mean the same thing by a request; the servable adds the
version that answered, bounds each request before the runner allocates anything for it, and
keeps the server's stack and paths out of what the client is told. With server-side batching
on (`batching`), the model's signature functions are replaced by batch queues
(`batch_scheduler.BatchedSignature`), as TF Serving wraps a servable's Session in a
BatchingSession: Predict, Classify, Regress and MultiInference (and warmup) all run through them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from tfx_serving_ext.checks.model_runner import LocalModel
from tfx_serving_ext.protocol import tensors
from tfx_serving_ext.protocol.errors import ServingError, client_message, from_exception
from tfx_serving_ext.protocol.saved_model import SERVE_TAG
from tfx_serving_ext.protocol.signatures import DEFAULT_SIGNATURE

if TYPE_CHECKING:
    from tfx_serving_ext.server.batching import ServerBatching

__all__ = ["DEFAULT_SIGNATURE", "Servable"]

logger = logging.getLogger(__name__)

_Response = TypeVar("_Response")


class Servable:
    """One loaded version of a model, answering Predict / Classify / Regress / MultiInference.

    Thread-safe: requests run concurrently on the same concrete functions. A request holds a
    reference to the Servable it started on, so unloading a version never cuts it short.
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        model: LocalModel,
        limits: tensors.RequestLimits = tensors.DEFAULT_LIMITS,
        batching: ServerBatching | None = None,
    ):
        self.name = name
        self.version = version
        self.path = path
        self.model = model
        self.limits = limits
        self.batched = batching is not None
        if batching is not None:
            # Every request path of LocalModel calls model.signatures[name](**arrays).
            model.signatures = batching.batched_signatures(model.signatures, path)

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
        limits: tensors.RequestLimits = tensors.DEFAULT_LIMITS,
        batching: ServerBatching | None = None,
    ) -> Servable:
        """Returns the SavedModel at `path` loaded with the 'serve' tag.

        Args:
            name: the model's name.
            version: the version this directory is.
            path: the version directory.
            method_name_check: TF Serving's --enable_signature_method_name_check.
            limits: the bounds every Predict request's inputs are checked against.
            batching: the server's batching (None: each request runs on its own).

        Raises:
            ServingError: the directory is missing, incomplete or not a loadable SavedModel.
            BatchingParametersError: the version's own batching_params.pbtxt is invalid.
        """
        path = Path(path)
        model = LocalModel(path, (SERVE_TAG,), method_name_check=method_name_check)
        return cls(name, version, path, model, limits, batching)

    def _answer(self, run: Callable[..., _Response], request) -> _Response:
        """Returns run(request, version), its errors told to the client without server detail."""
        try:
            return run(request, self.version)
        except Exception as exc:
            raise self._client_error(exc) from exc

    def _client_error(self, exc: Exception) -> ServingError:
        """Returns the status a failed request is told, without the server's stack or paths."""
        status = from_exception(exc)
        if not isinstance(exc, ServingError):
            logger.error("%s v%d failed a request: %s", self.name, self.version, exc)
        safe = client_message(status.message, str(self.path), str(self.path.resolve()))
        return status if safe == status.message else ServingError(status.code, safe)

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Returns the PredictResponse for `request`, run on this version.

        Raises:
            ServingError: INVALID_ARGUMENT for inputs of a rank the signature cannot take or
                over `self.limits` (checked before they are decoded); as LocalModel.predict.
        """
        self._check_predict(request)
        return self._answer(self.model.predict, request)

    async def predict_async(
        self, request: predict_pb2.PredictRequest
    ) -> predict_pb2.PredictResponse:
        """As `predict`, awaiting the batch queue rather than holding a thread while it waits.

        Raises:
            ServingError: as `predict`.
        """
        self._check_predict(request)
        try:
            return await self.model.predict_async(request, self.version)
        except Exception as exc:
            raise self._client_error(exc) from exc

    def _check_predict(self, request: predict_pb2.PredictRequest) -> None:
        signature = self.signature_defs.get(request.model_spec.signature_name or DEFAULT_SIGNATURE)
        tensors.check_request_tensors(request.inputs, signature, self.limits)

    def predict_arrays(self, request: predict_pb2.PredictRequest) -> dict[str, np.ndarray]:
        """Returns the output arrays by alias for `request` (the REST path: no proto between).

        Raises:
            ServingError: as `predict`.
        """
        self._check_predict(request)

        def run(request, _version):
            _, outputs = self.model.predict_outputs(request)
            return {alias: tensor.numpy() for alias, tensor in outputs.items()}

        return self._answer(run, request)

    def classify(
        self, request: classification_pb2.ClassificationRequest
    ) -> classification_pb2.ClassificationResponse:
        """Returns the ClassificationResponse for the tf.Examples in `request`."""
        return self._answer(self.model.classify, request)

    def regress(
        self, request: regression_pb2.RegressionRequest
    ) -> regression_pb2.RegressionResponse:
        """Returns the RegressionResponse for the tf.Examples in `request`."""
        return self._answer(self.model.regress, request)

    def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest
    ) -> inference_pb2.MultiInferenceResponse:
        """Returns one Classify/Regress result per task, all run on the same examples."""
        return self._answer(self.model.multi_inference, request)
