"""WarmupRequestWriter: adds a TF Serving warmup file, replayed in-process, to a model."""

from tfx_serving_ext.components.warmup_request_writer.component import (
    WarmupRequestWriter,
    WarmupRequestWriterSpec,
)

__all__ = ["WarmupRequestWriter", "WarmupRequestWriterSpec"]
