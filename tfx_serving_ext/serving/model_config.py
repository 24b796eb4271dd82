"""TF Serving's model config file (text-format ModelServerConfig): read, label, write atomically.

TF Serving re-reads the file every `--model_config_file_poll_wait_seconds`; a half-written file
is a parse error (logged, old config kept) at best, so it is always replaced with write + rename.
A label may only point at a version the server reports AVAILABLE: callers check that first.

Usage:
    set_version_labels("/serving/models.config", "penguin", {"canary": 12, "stable": 11})
    labels = read_version_labels("/serving/models.config", "penguin")  # {"canary": 12, ...}
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from google.protobuf import text_format

logger = logging.getLogger(__name__)


class ModelConfigError(ValueError):
    """The model config file cannot be read, or does not describe the model as asked."""


def read_model_server_config(path: str | os.PathLike):
    """Returns the parsed ModelServerConfig proto of a text-format model config file.

    Raises:
        ModelConfigError: the file is missing or does not parse.
    """
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(Path(path).read_text(), config)
    except FileNotFoundError as exc:
        raise ModelConfigError(
            f"model config file {path} does not exist; create it (see TF Serving's "
            "--model_config_file) or leave model_config_file unset"
        ) from exc
    except text_format.ParseError as exc:
        raise ModelConfigError(
            f"Error parsing text-format tensorflow.serving.ModelServerConfig in {path}: {exc}"
        ) from exc
    return config


def write_model_server_config(path: str | os.PathLike, config) -> None:
    """Replaces the model config file atomically (temp file, fsync, rename, fsync dir)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text_format.MessageToString(config))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _model_entry(config, model_name: str, path: str | os.PathLike):
    if config.WhichOneof("config") != "model_config_list":
        raise ModelConfigError(
            f"{path} has no model_config_list (custom_model_config is not supported)"
        )
    for entry in config.model_config_list.config:
        if entry.name == model_name:
            return entry
    names = [e.name for e in config.model_config_list.config]
    raise ModelConfigError(
        f"{path} has no model named {model_name!r} (it has {names}); add a config entry for it "
        "or pass the right model name"
    )


def read_version_labels(path: str | os.PathLike, model_name: str) -> dict[str, int]:
    """Returns {label: version} set for `model_name` in the model config file.

    Raises:
        ModelConfigError: the file cannot be read or has no entry for `model_name`.
    """
    entry = _model_entry(read_model_server_config(path), model_name, path)
    return dict(entry.version_labels)


def set_version_labels(
    path: str | os.PathLike,
    model_name: str,
    labels: dict[str, int],
    *,
    remove: tuple[str, ...] = (),
) -> dict[str, int]:
    """Returns the model's labels after setting `labels` and dropping `remove`, written atomically.

    Labels not named are left alone. Only call this once the server reports every target
    version AVAILABLE.

    Raises:
        ModelConfigError: the file cannot be read or has no entry for `model_name`.
    """
    config = read_model_server_config(path)
    entry = _model_entry(config, model_name, path)
    for label in remove:
        entry.version_labels.pop(label, None)
    for label, version in labels.items():
        entry.version_labels[label] = int(version)
    write_model_server_config(path, config)
    logger.info("Model config %s: %s labels now %s", path, model_name, dict(entry.version_labels))
    return dict(entry.version_labels)


def drop_labels_on_versions(
    path: str | os.PathLike, model_name: str, versions: set[int]
) -> list[str]:
    """Returns the labels removed because they pointed at one of `versions` (written atomically)."""
    labels = read_version_labels(path, model_name)
    doomed = tuple(label for label, version in labels.items() if version in versions)
    if doomed:
        set_version_labels(path, model_name, {}, remove=doomed)
    return list(doomed)
