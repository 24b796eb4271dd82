"""Prepares the canary's traffic: one request list per side, and a sender per side.

The requests are built once from the candidate's signatures (`serving.requests`); each side
gets copies addressed to its model name and version, and the baseline gets only those of the
signatures `canary_compare.plan_comparison` found comparable (None elsewhere, i.e. not sent).
Senders go through `ServingClient`'s prebuilt-request calls and return numpy outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tfx_serving_ext.canary.backends.base import ModelTarget
from tfx_serving_ext.canary.compare import SignaturePlan
from tfx_serving_ext.canary.load_driver import Sender
from tfx_serving_ext.checks.requests import RequestForSignature


def addressed(item: RequestForSignature, target: ModelTarget) -> RequestForSignature:
    """Returns a copy of `item` whose model_spec names `target` (model and version)."""
    request = type(item.request)()
    request.CopyFrom(item.request)
    request.model_spec.name = target.model_name
    if target.version is not None:
        request.model_spec.version.value = target.version
    else:
        request.model_spec.ClearField("version")
    return RequestForSignature(item.signature_name, item.kind, request)


def side_requests(
    requests: Sequence[RequestForSignature],
    target: ModelTarget,
    plans: Mapping[str, SignaturePlan] | None = None,
) -> list[RequestForSignature | None]:
    """Returns `requests` addressed to `target`; with `plans`, None for uncompared signatures."""
    prepared: list[RequestForSignature | None] = []
    for item in requests:
        if plans is not None and not plans[item.signature_name].compared:
            prepared.append(None)
        else:
            prepared.append(addressed(item, target))
    return prepared


def make_sender(client) -> Sender:
    """Returns a function that sends a prepared request with `client` and returns its outputs.

    Predict gives the response's output tensors; classify gives `classes` (labels, [n, k])
    and `scores` ([n, k]); regress gives `outputs` ([n]).
    """
    from tfx_serving_ext.protocol.tensors import tensor_proto_to_ndarray

    def send(item: RequestForSignature) -> dict[str, np.ndarray]:
        if item.kind == "predict":
            response = client.raw_predict(item.request)
            return {k: tensor_proto_to_ndarray(v) for k, v in response.outputs.items()}
        if item.kind == "classify":
            response = client.raw_classify(item.request)
            rows = response.result.classifications
            return {
                "classes": np.array([[c.label for c in row.classes] for row in rows], dtype=object),
                "scores": np.array([[c.score for c in row.classes] for row in rows]),
            }
        response = client.raw_regress(item.request)
        return {"outputs": np.array([r.value for r in response.result.regressions])}

    return send
