"""A resolver strategy that finds the model serving now: the one most recently pushed.

    baseline = Resolver(
        strategy_class=LatestPushedModelStrategy,
        model=Channel(type=Model),
        pushed_model=Channel(type=PushedModel),
    ).with_id("latest_pushed_model")
    SignatureValidator(model=..., baseline_model=baseline.outputs["model"])

It picks the newest `PushedModel` with `pushed == 1` (written by ServingPusher or the stock
Pusher) and follows MLMD lineage back to the `Model` that push consumed. On the first run nothing
was pushed yet, and both outputs are empty, so an optional baseline input simply stays empty.

KubeflowV2DagRunner compiles only TFX's LatestArtifactStrategy and LatestBlessedModelStrategy; on
KFP the example pipeline uses LatestBlessedModelStrategy (the latest model our
SignatureValidator blessed) instead.
"""

from __future__ import annotations

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

_PUSHED = "pushed"
MODEL_KEY = "model"
PUSHED_MODEL_KEY = "pushed_model"


class LatestPushedModelStrategy(resolver.ResolverStrategy):
    """Resolves the latest Model whose push succeeded, with that PushedModel."""

    def resolve_artifacts(
        self, store: mlmd.MetadataStore, input_dict: dict[str, list[types.Artifact]]
    ) -> dict[str, list[types.Artifact]] | None:
        if set(input_dict) != {MODEL_KEY, PUSHED_MODEL_KEY}:
            raise ValueError(
                "LatestPushedModelStrategy needs exactly the inputs "
                f"{MODEL_KEY}=Channel(type=Model) and {PUSHED_MODEL_KEY}=Channel(type=PushedModel);"
                f" got {sorted(input_dict)}"
            )
        models_by_id = {model.id: model for model in input_dict[MODEL_KEY]}
        pushed = [
            artifact
            for artifact in input_dict[PUSHED_MODEL_KEY]
            if artifact.has_custom_property(_PUSHED)
            and artifact.get_int_custom_property(_PUSHED) == 1
        ]
        for pushed_model in sorted(pushed, key=lambda a: a.id, reverse=True):
            model = _model_consumed_by_producer_of(store, pushed_model.id, models_by_id)
            if model is not None:
                return {MODEL_KEY: [model], PUSHED_MODEL_KEY: [pushed_model]}
        return {MODEL_KEY: [], PUSHED_MODEL_KEY: []}


def _model_consumed_by_producer_of(
    store: mlmd.MetadataStore, artifact_id: int, models_by_id: dict[int, types.Artifact]
) -> types.Artifact | None:
    """Returns the Model that was an input of the execution which produced `artifact_id`."""
    output_events = [
        event
        for event in store.get_events_by_artifact_ids([artifact_id])
        if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    ]
    if not output_events:
        return None
    execution_ids = [event.execution_id for event in output_events]
    input_ids = [
        event.artifact_id
        for event in store.get_events_by_execution_ids(execution_ids)
        if event.type in (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
    ]
    candidates = [models_by_id[i] for i in input_ids if i in models_by_id]
    return max(candidates, key=lambda a: a.id) if candidates else None
