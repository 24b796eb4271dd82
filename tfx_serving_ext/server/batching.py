"""Server-side batching as tensorflow_model_server's --enable_batching: parameters and wiring.

TF Serving reads `--batching_parameters_file` as a text-format
`tensorflow.serving.BatchingParameters` (servables/tensorflow/session_bundle_config.proto), e.g.

    max_batch_size { value: 32 }
    batch_timeout_micros { value: 1000 }
    max_enqueued_batches { value: 100 }
    num_batch_threads { value: 2 }
    allowed_batch_sizes: 8
    allowed_batch_sizes: 32
    pad_variable_length_inputs: true

and leaves an omitted field at the default of its scheduler (max_batch_size 1000,
batch_timeout_micros 0, max_enqueued_batches 10, one batch thread per core). With
`--enable_per_model_batching_parameters`, a version directory's own `batching_params.pbtxt`
replaces the file for that model. The queues and threads are `batch_scheduler`'s.

The tensorflow-serving-api wheel does not ship session_bundle_config_pb2, so the message is
declared in `config_protos` from the .proto's field list (names, numbers and wrapper types as
there), and parsed with protobuf's own text_format: a misspelt field is refused with its name
and position.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format

from tfx_serving_ext.server.batch_scheduler import BatchScheduler, QueueOptions
from tfx_serving_ext.server.config_protos import BATCHING_FIELDS, batching_parameters_class

logger = logging.getLogger(__name__)

PER_MODEL_FILE = "batching_params.pbtxt"


class BatchingParametersError(ValueError):
    """The batching parameters file cannot be read, does not parse, or holds invalid values."""


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's BatchingParameters, with its schedulers' defaults for omitted fields."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    # The size of the batches run when large batches are split (default: max_batch_size).
    max_execution_batch_size: int = 0

    def queue_options(self) -> QueueOptions:
        """Returns the options of one signature's queue."""
        execution = self.max_batch_size
        if self.enable_large_batch_splitting and self.max_execution_batch_size > 0:
            execution = self.max_execution_batch_size
        return QueueOptions(
            input_batch_size_limit=self.max_batch_size,
            max_execution_batch_size=execution,
            batch_timeout_micros=self.batch_timeout_micros,
            max_enqueued_batches=self.max_enqueued_batches,
            allowed_batch_sizes=self.allowed_batch_sizes,
            pad_variable_length_inputs=self.pad_variable_length_inputs,
            enable_large_batch_splitting=self.enable_large_batch_splitting,
        )

    def check(self) -> None:
        """Raises BatchingParametersError where TF Serving refuses the parameters at load."""
        for name, minimum, wording in (
            ("max_batch_size", 1, "positive"),
            ("num_batch_threads", 1, "positive"),
            ("batch_timeout_micros", 0, "non-negative"),
            ("max_enqueued_batches", 0, "non-negative"),
        ):
            value = getattr(self, name)
            if value < minimum:
                raise BatchingParametersError(f"{name} must be {wording}; was {value}")
        if self.enable_large_batch_splitting and self.max_execution_batch_size < 0:
            raise BatchingParametersError(
                f"max_execution_batch_size must be positive; was {self.max_execution_batch_size}"
            )
        sizes = self.allowed_batch_sizes
        if not sizes:
            return
        if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)) or sizes[0] <= 0:
            raise BatchingParametersError(
                "allowed_batch_sizes entries must be monotonically increasing (and positive); "
                f"were {list(sizes)}"
            )
        execution = self.queue_options().max_execution_batch_size
        if sizes[-1] != execution:
            which = (
                "max_execution_batch_size"
                if self.enable_large_batch_splitting and self.max_execution_batch_size
                else "max_batch_size"
            )
            raise BatchingParametersError(
                f"Last entry in allowed_batch_sizes must match {which}; last entry was "
                f"{sizes[-1]}; expected {execution}"
            )


def parse_batching_parameters(text: str, source: str = "<text>") -> BatchingParameters:
    """Returns the checked BatchingParameters of a text-format proto.

    Raises:
        BatchingParametersError: names `source` and the field (or line) that is wrong.
    """
    proto = batching_parameters_class()()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise BatchingParametersError(
            f"Error parsing text-format tensorflow.serving.BatchingParameters in {source}: {exc}"
        ) from exc
    values = {}
    for name, _, kind in BATCHING_FIELDS:
        if kind.startswith("."):
            if proto.HasField(name):
                values[name] = getattr(proto, name).value
        elif kind == "bool":
            values[name] = getattr(proto, name)
        else:
            values[name] = tuple(getattr(proto, name))
    parameters = BatchingParameters(**values)
    try:
        parameters.check()
    except BatchingParametersError as exc:
        raise BatchingParametersError(f"Invalid batching parameters in {source}: {exc}") from exc
    return parameters


def read_batching_parameters(path: str | os.PathLike) -> BatchingParameters:
    """Returns the checked BatchingParameters of a --batching_parameters_file.

    Raises:
        BatchingParametersError: the file cannot be read, does not parse or is invalid.
    """
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchingParametersError(
            f"Cannot read --batching_parameters_file {path}: {exc}. Give a readable text-format "
            "tensorflow.serving.BatchingParameters file."
        ) from exc
    return parse_batching_parameters(text, str(path))


class ServerBatching:
    """The server's batching: its parameters and the batch threads every model's queues share.

    As TF Serving's SharedBatchScheduler: one pool of `num_batch_threads` threads serves the
    queues of all models (one queue per signature of each loaded version), round robin.
    """

    def __init__(self, parameters: BatchingParameters, per_model_parameters: bool = False):
        parameters.check()
        self.parameters = parameters
        self.per_model_parameters = per_model_parameters
        self._scheduler = BatchScheduler(parameters.num_batch_threads, parameters.thread_pool_name)
        logger.info("Batching enabled: %s", parameters)

    @classmethod
    def from_options(cls, options) -> ServerBatching | None:
        """Returns the batching of a ServerOptions, or None when `enable_batching` is off.

        Raises:
            BatchingParametersError: `batching_parameters_file` is unreadable or invalid.
        """
        if not getattr(options, "enable_batching", False):
            return None
        path = getattr(options, "batching_parameters_file", "")
        parameters = read_batching_parameters(path) if path else BatchingParameters()
        return cls(parameters, getattr(options, "enable_per_model_batching_parameters", False))

    def parameters_for(self, version_dir: Path) -> BatchingParameters:
        """Returns the parameters of a version: its own file when per-model ones are on.

        Raises:
            BatchingParametersError: the version's batching_params.pbtxt is invalid.
        """
        own = Path(version_dir) / PER_MODEL_FILE
        if self.per_model_parameters and own.is_file():
            return read_batching_parameters(own)
        return self.parameters

    def batched_signatures(self, signatures: dict, version_dir: Path) -> dict:
        """Returns `signatures` (name -> callable) with each call going through a batch queue."""
        options = self.parameters_for(version_dir).queue_options()
        return {
            name: self._scheduler.add_queue(function, options, name)
            for name, function in signatures.items()
        }

    def stop(self) -> None:
        """Stops the batch threads; requests still queued fail with UNAVAILABLE."""
        self._scheduler.stop()
