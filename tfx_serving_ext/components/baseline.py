"""The baseline: a resolver whose `model` output is the model serving now (empty at first).

from tfx_serving_ext.components import baseline_resolver

serving_now = baseline_resolver("latest_pushed")
validator = SignatureValidator(model=..., baseline_model=serving_now.outputs["model"])

These follow MLMD, a guess at what serves. The components' `serving_baseline` parameter asks the
model server (or reads the serving volume) instead and needs no resolver node: prefer it where
the serving volume is reachable, and on open-source Kubeflow Pipelines, which runs no resolvers.
"""

from __future__ import annotations

from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.types import Channel, standard_artifacts

from tfx_serving_ext.components.latest_pushed_model import LatestPushedModelStrategy

BASELINE_KINDS = ("latest_pushed", "latest_blessed")


def baseline_resolver(kind: str = "latest_pushed") -> Resolver:
    """Returns the resolver whose `model` output is the model serving now.

    `latest_pushed` follows MLMD lineage to the model of the last successful push (exact; runs
    under LocalDagRunner and the tfx CLI). `latest_blessed` is TFX's LatestBlessedModelStrategy
    over the SignatureValidator's blessings, the strategy KubeflowV2DagRunner can compile.

    Raises:
        ValueError: `kind` is neither of BASELINE_KINDS.
    """
    if kind == "latest_pushed":
        return Resolver(
            strategy_class=LatestPushedModelStrategy,
            model=Channel(type=standard_artifacts.Model),
            pushed_model=Channel(type=standard_artifacts.PushedModel),
        ).with_id("latest_pushed_model")
    if kind == "latest_blessed":
        return Resolver(
            strategy_class=LatestBlessedModelStrategy,
            model=Channel(type=standard_artifacts.Model),
            model_blessing=Channel(type=standard_artifacts.ModelBlessing),
        ).with_id("latest_blessed_model")
    raise ValueError(f"baseline must be one of {BASELINE_KINDS}, not {kind!r}")
