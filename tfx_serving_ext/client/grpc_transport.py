"""TF Serving's gRPC API from the client's side: one channel, both services, errors as statuses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from tfx_serving_ext.protocol.errors import ServerUnreachable, ServingError, ServingTimeout
from tfx_serving_ext.protocol.tensors import ndarray_to_tensor_proto, tensor_proto_to_ndarray


class GrpcTransport:
    """Sends tensorflow.serving requests over one gRPC channel to `address` ("host:port")."""

    def __init__(self, address: str, timeout: float):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.address = address
        self.timeout = timeout
        self._grpc = grpc
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", -1),
                ("grpc.max_send_message_length", -1),
            ],
        )
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _call(self, method, request, timeout: float | None = None):
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout)
        except self._grpc.RpcError as exc:
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
            details = exc.details() or ""
            if code == "UNAVAILABLE":
                raise ServerUnreachable(
                    f"Cannot reach TF Serving gRPC API at {self.address}: {details}"
                ) from None
            if code == "DEADLINE_EXCEEDED":
                raise ServingTimeout(
                    f"No answer from {self.address} within {self.timeout} s: {details}"
                ) from None
            raise ServingError(code, details) from None

    def model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """Returns ModelService.GetModelStatus's answer."""
        return self._call(self._models.GetModelStatus, request)

    def metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """Returns PredictionService.GetModelMetadata's answer."""
        return self._call(self._prediction.GetModelMetadata, request)

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Returns PredictionService.Predict's answer."""
        return self._call(self._prediction.Predict, request)

    def predict_arrays(
        self,
        spec: model_pb2.ModelSpec,
        inputs: Mapping[str, np.ndarray],
        output_filter: Iterable[str] = (),
    ) -> tuple[dict[str, np.ndarray], model_pb2.ModelSpec]:
        """Returns (output arrays, the answering ModelSpec) of a Predict on input arrays."""
        request = predict_pb2.PredictRequest()
        request.model_spec.CopyFrom(spec)
        for name, array in inputs.items():
            ndarray_to_tensor_proto(array, request.inputs[name])
        request.output_filter.extend(output_filter)
        response = self.predict(request)
        outputs = {k: tensor_proto_to_ndarray(v) for k, v in response.outputs.items()}
        return outputs, response.model_spec

    def classify(
        self, request: classification_pb2.ClassificationRequest
    ) -> classification_pb2.ClassificationResponse:
        """Returns PredictionService.Classify's answer."""
        return self._call(self._prediction.Classify, request)

    def regress(
        self, request: regression_pb2.RegressionRequest
    ) -> regression_pb2.RegressionResponse:
        """Returns PredictionService.Regress's answer."""
        return self._call(self._prediction.Regress, request)

    def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest
    ) -> inference_pb2.MultiInferenceResponse:
        """Returns PredictionService.MultiInference's answer."""
        return self._call(self._prediction.MultiInference, request)

    def reload_config(
        self, request: model_management_pb2.ReloadConfigRequest, timeout: float | None = None
    ) -> model_management_pb2.ReloadConfigResponse:
        """Returns ModelService.HandleReloadConfigRequest's answer."""
        return self._call(self._models.HandleReloadConfigRequest, request, timeout)

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()
