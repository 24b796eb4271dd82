"""ServingPusher: pushes a blessed model to a serving volume (and, later, Cloud Run)."""

from tfx_serving_ext.components.serving_pusher.component import ServingPusher, ServingPusherSpec

__all__ = ["ServingPusher", "ServingPusherSpec"]
