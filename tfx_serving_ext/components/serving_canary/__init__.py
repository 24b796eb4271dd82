"""ServingCanary: the InfraValidator-backed canary that compares the candidate with what serves."""

from tfx_serving_ext.components.serving_canary.component import ServingCanary, ServingCanarySpec

__all__ = ["ServingCanary", "ServingCanarySpec"]
