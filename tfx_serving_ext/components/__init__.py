"""The TFX components of tfx-serving-ext and the baseline resolver, imported on first use.

from tfx_serving_ext.components import ServingPusher, baseline_resolver
"""

from __future__ import annotations

import importlib

_COMPONENTS = {
    "SignatureValidator": "tfx_serving_ext.components.signature_validator",
    "WarmupRequestWriter": "tfx_serving_ext.components.warmup_request_writer",
    "ServingPusher": "tfx_serving_ext.components.serving_pusher",
    "ServingCanary": "tfx_serving_ext.components.serving_canary",
    "baseline_resolver": "tfx_serving_ext.components.baseline",
    "LatestPushedModelStrategy": "tfx_serving_ext.components.latest_pushed_model",
}

__all__ = sorted(_COMPONENTS)


def __getattr__(name: str):
    module = _COMPONENTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
