"""Writes, reads and replays TF Serving warmup files (`assets.extra/tf_serving_warmup_requests`).

TF Serving replays every record of that TFRecord file (serialized PredictionLogs) when it loads
a version, before the version becomes AVAILABLE; more than 1000 records, or one failing record,
and the load fails. `build_warmup_model` therefore replays every record in-process first, so a
bad warmup file never ships.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tensorflow_serving.apis import prediction_log_pb2

from tfx_serving_ext.checks.model_runner import LocalModel, RequestFailed
from tfx_serving_ext.checks.requests import (
    ExampleLike,
    RequestForSignature,
    build_requests,
    from_prediction_log,
)
from tfx_serving_ext.protocol.errors import ServingError, invalid_argument
from tfx_serving_ext.protocol.saved_model import (
    SERVE_TAG,
    find_serving_model_dir,
    read_signature_defs,
)

logger = logging.getLogger(__name__)

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving: "Number of warmup records exceeds the maximum (1000)"


class WarmupError(RuntimeError):
    """A warmup file cannot be built or written."""


class WarmupReplayError(WarmupError):
    """A warmup record fails against the model: TF Serving would refuse to load this version."""

    def __init__(self, signature_name: str, index: int, reason: str):
        super().__init__(
            f"warmup record {index} (signature '{signature_name}') fails against the model: "
            f"{reason}. TF Serving would refuse to load this version; fix the signature or "
            "leave it out with signature_names."
        )
        self.signature_name = signature_name
        self.index = index


def warmup_file_path(saved_model_dir: str | os.PathLike) -> Path:
    """Returns `<saved_model_dir>/assets.extra/tf_serving_warmup_requests`."""
    return Path(saved_model_dir) / WARMUP_DIR / WARMUP_FILE


def write_warmup_file(
    saved_model_dir: str | os.PathLike,
    records: Sequence[RequestForSignature | prediction_log_pb2.PredictionLog],
) -> Path:
    """Returns the path of the warmup file written into `saved_model_dir`.

    Raises:
        WarmupError: more than 1000 records (TF Serving would refuse the file).
    """
    import tensorflow as tf

    if len(records) > MAX_WARMUP_RECORDS:
        raise WarmupError(
            f"{len(records)} warmup records; TF Serving accepts at most {MAX_WARMUP_RECORDS}. "
            "Use fewer examples or signatures."
        )
    path = warmup_file_path(saved_model_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            log = record.to_prediction_log() if isinstance(record, RequestForSignature) else record
            writer.write(log.SerializeToString())
    logger.info("Wrote %d warmup records to %s", len(records), path)
    return path


class WarmupFileError(WarmupError, ServingError):
    """A warmup file TF Serving would refuse to load: corrupt (DATA_LOSS) or over 1000 records."""

    def __init__(self, code: str, message: str):
        ServingError.__init__(self, code, message)


def read_warmup_file(path: str | os.PathLike) -> list[prediction_log_pb2.PredictionLog]:
    """Returns the PredictionLogs of a warmup file (or of the file inside a SavedModel dir).

    Reads as TF Serving does: stops at record 1001 rather than reading a huge file whole.

    Raises:
        WarmupFileError: DATA_LOSS for a corrupt file or record, INVALID_ARGUMENT for more
            than 1000 records (both a WarmupError and a ServingError).
    """
    import tensorflow as tf

    path = Path(path)
    if path.is_dir():
        path = warmup_file_path(path)
    logs = []
    try:
        for record in tf.data.TFRecordDataset([str(path)]):
            if len(logs) >= MAX_WARMUP_RECORDS:
                raise WarmupFileError(
                    "INVALID_ARGUMENT",
                    f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at "
                    f"{path}",
                )
            try:
                logs.append(prediction_log_pb2.PredictionLog.FromString(record.numpy()))
            except Exception as exc:  # DecodeError
                raise WarmupFileError(
                    "DATA_LOSS", f"Failed to parse PredictionLog record {len(logs)} of {path}"
                ) from exc
    except tf.errors.OpError as exc:
        raise WarmupFileError(
            "DATA_LOSS", f"Failed to read warmup records from {path}: {exc.message}"
        ) from exc
    return logs


def replay_requests(
    model: LocalModel, records: Iterable[RequestForSignature], *, iterations: int = 1
) -> int:
    """Returns the number of requests replayed: each record `iterations` times, as TF Serving does.

    Raises:
        WarmupReplayError: a record fails; names the record and the signature.
    """
    count = 0
    for index, record in enumerate(records):
        for _ in range(max(1, iterations)):
            try:
                model.run(record)
            except RequestFailed as exc:
                raise WarmupReplayError(record.signature_name, index, str(exc)) from exc
            count += 1
    return count


# PredictionLog type -> the method of LocalModel (or of a server's Servable) that answers it.
WARMUP_LOG_METHODS = {
    "predict_log": "predict",
    "classify_log": "classify",
    "regress_log": "regress",
    "multi_inference_log": "multi_inference",
}


def replay_prediction_logs(
    model, logs: Iterable[prediction_log_pb2.PredictionLog], *, iterations: int = 1
) -> int:
    """Returns the number of requests replayed from PredictionLogs, as TF Serving's warmup does.

    Each record runs `iterations` times; a record without a log type is skipped.

    Args:
        model: a `LocalModel`, or anything answering the same request methods (the embedded
            server's Servable).
        logs: the warmup file's records.
        iterations: --num_request_iterations_for_warmup.

    Raises:
        ServingError: INVALID_ARGUMENT for a log type warmup does not support; the request's
            own status, naming the record, when one fails.
    """
    count = 0
    for index, log in enumerate(logs):
        kind = log.WhichOneof("log_type")
        if kind is None:
            continue
        method = WARMUP_LOG_METHODS.get(kind)
        if method is None:
            raise invalid_argument(f"Unsupported log_type for warmup: {kind}")
        request = getattr(log, kind).request
        for _ in range(max(1, iterations)):
            try:
                getattr(model, method)(request)
            except ServingError as exc:
                raise ServingError(
                    exc.code, f"Warmup request {index} ({kind}) failed: {exc.message}"
                ) from exc
            count += 1
    return count


@dataclass
class WarmupResult:
    """What `build_warmup_model` wrote: the file, records per signature, skipped signatures."""

    warmup_file: Path
    records_per_signature: dict[str, int]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def total_records(self) -> int:
        """Returns the number of records in the warmup file."""
        return sum(self.records_per_signature.values())


def cap_records(
    records: Sequence[RequestForSignature], limit: int = MAX_WARMUP_RECORDS
) -> list[RequestForSignature]:
    """Returns at most `limit` records, the same number for every signature (as many as fit)."""
    by_signature: dict[str, list[RequestForSignature]] = {}
    for record in records:
        by_signature.setdefault(record.signature_name, []).append(record)
    if not by_signature or len(records) <= limit:
        return list(records)
    per_signature = limit // len(by_signature)
    logger.warning(
        "%d warmup records exceed TF Serving's limit of %d; keeping %d per signature",
        len(records),
        limit,
        per_signature,
    )
    return [r for group in by_signature.values() for r in group[:per_signature]]


def build_warmup_model(
    model_uri: str | os.PathLike,
    output_uri: str | os.PathLike,
    examples: Sequence[ExampleLike],
    *,
    signature_names: Sequence[str] | None = None,
    model_name: str = "model",
    tags: Iterable[str] = (SERVE_TAG,),
    iterations: int = 1,
) -> WarmupResult:
    """Returns what was written after copying the model to `output_uri` with a warmup file added.

    The layout of `model_uri` is kept (a TFX Trainer's `Format-Serving/` stays there); the
    warmup file goes into the copied SavedModel's `assets.extra/`. Every record is replayed
    against the model in-process before the file is written.

    Args:
        model_uri: the Model artifact's URI (or a SavedModel directory).
        output_uri: where the copy goes (the output Model artifact's URI).
        examples: sampled serialized tf.Examples; one record per example and signature.
        signature_names: signatures to warm up; None means every serving signature.
        model_name: `model_spec.name` in the records (TF Serving ignores it during warmup).
        tags: the meta graph's tag set.
        iterations: how many times each record is replayed here.

    Raises:
        SavedModelError: no readable SavedModel under `model_uri`.
        WarmupError: no signature could be filled from the examples.
        WarmupReplayError: a record fails against the model.
    """
    tags = list(tags)
    source_dir = find_serving_model_dir(model_uri)
    signature_defs = read_signature_defs(source_dir, tags)
    skipped: dict[str, str] = {}
    records = build_requests(signature_defs, examples, model_name, signature_names, skipped=skipped)
    records = cap_records(records)
    if not records:
        raise WarmupError(
            f"no warmup request could be built from {len(examples)} examples for signatures "
            f"{list(signature_names or sorted(signature_defs))}: {skipped or 'no examples'}"
        )
    model = LocalModel(source_dir, tags)
    replayed = replay_requests(model, records, iterations=iterations)
    logger.info("Replayed %d warmup requests against %s in-process", replayed, source_dir)

    output_uri = Path(output_uri)
    shutil.copytree(model_uri, output_uri, dirs_exist_ok=True)
    target_dir = output_uri / Path(source_dir).relative_to(Path(model_uri))
    if warmup_file_path(target_dir).exists():
        logger.warning("Replacing the warmup file the input model already had")
    path = write_warmup_file(target_dir, records)
    counts: dict[str, int] = {}
    for record in records:
        counts[record.signature_name] = counts.get(record.signature_name, 0) + 1
    return WarmupResult(path, counts, skipped)


def load_warmup_requests(path: str | os.PathLike) -> list[RequestForSignature]:
    """Returns the requests of a warmup file (for replay or inspection)."""
    return [from_prediction_log(log) for log in read_warmup_file(path)]
