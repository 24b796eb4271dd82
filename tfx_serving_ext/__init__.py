"""TFX components that ship TensorFlow models to TensorFlow Serving.

    from tfx_serving_ext import (
        SignatureValidator, WarmupRequestWriter, ServingCanary, ServingPusher)

The components are imported on first use, so `tfx-serving-ext --help` and modules that need only
the serving library do not pay for importing TFX.
"""

from importlib import import_module
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("tfx-serving-ext")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_COMPONENTS = ("SignatureValidator", "WarmupRequestWriter", "ServingCanary", "ServingPusher")
__all__ = ["__version__", *_COMPONENTS]


def __getattr__(name: str):
    if name in _COMPONENTS:
        return getattr(import_module("tfx_serving_ext.components"), name)
    raise AttributeError(f"module 'tfx_serving_ext' has no attribute {name!r}")
