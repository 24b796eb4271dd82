"""TF Serving's model config file (text-format ModelServerConfig): build, parse, label, write.

The one place that reads or writes a ModelServerConfig: the embedded server parses it (with TF
Serving's validity checks), the canary's backends write one for the models they host, and the
pusher sets version labels in the file a running fleet polls.

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
from tensorflow_serving.config import model_server_config_pb2

from tfx_serving_ext.protocol.errors import ServingError, invalid_argument

ModelServerConfig = model_server_config_pb2.ModelServerConfig

logger = logging.getLogger(__name__)


class ModelConfigError(ValueError):
    """The model config file cannot be read, or does not describe the model as asked."""


def parse_model_server_config(text: str, where: str = "") -> ModelServerConfig:
    """Returns the ModelServerConfig in `text` (protobuf text format).

    Raises:
        ModelConfigError: the text is not a valid text-format ModelServerConfig.
    """
    config = ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ModelConfigError(
            f"Error parsing text-format tensorflow.serving.ModelServerConfig{where}: {exc}"
        ) from exc
    return config


def read_model_server_config(path: str | os.PathLike) -> ModelServerConfig:
    """Returns the parsed ModelServerConfig proto of a text-format model config file.

    Raises:
        ModelConfigError: the file is missing, unreadable or does not parse.
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError as exc:
        raise ModelConfigError(
            f"model config file {path} does not exist; create it (see TF Serving's "
            "--model_config_file) or leave model_config_file unset"
        ) from exc
    except OSError as exc:
        raise ModelConfigError(f"Cannot read model config file {path}: {exc}") from exc
    return parse_model_server_config(text, f" in {path}")


def model_server_config(
    models: list[tuple[str, str | os.PathLike]],
    version_policy: str = "latest",
    num_versions: int = 1,
    versions: tuple[int, ...] = (),
) -> ModelServerConfig:
    """Returns a config serving each (name, base_path) under one version policy.

    `version_policy` is 'latest' (keep the `num_versions` newest), 'all' or 'specific'
    (`versions`). Base paths are made absolute, as TF Serving resolves them from its own cwd.

    Raises:
        ModelConfigError: an unknown version policy.
    """
    config = ModelServerConfig()
    for name, base_path in models:
        model = config.model_config_list.config.add(
            name=name, base_path=str(Path(base_path).absolute()), model_platform="tensorflow"
        )
        policy = model.model_version_policy
        if version_policy == "latest":
            policy.latest.num_versions = num_versions
        elif version_policy == "all":
            policy.all.SetInParent()
        elif version_policy == "specific":
            policy.specific.versions.extend(versions)
        else:
            raise ModelConfigError(
                f"Unknown version policy {version_policy!r}: use 'latest', 'all' or 'specific'"
            )
    return config


def model_server_config_text(models: list[tuple[str, str | os.PathLike]]) -> str:
    """Returns the text-format config serving each (name, base_path) with latest(1)."""
    return text_format.MessageToString(model_server_config(models))


def validated_model_configs(config: ModelServerConfig) -> list:
    """Returns the ModelConfigs of `config` after TF Serving's validity checks.

    Raises:
        ServingError: a custom config, a duplicate name, an empty name or base path, or a
            platform other than tensorflow.
    """
    if config.WhichOneof("config") == "custom_model_config":
        raise ServingError("UNIMPLEMENTED", "custom_model_config is not supported")
    models = list(config.model_config_list.config)
    seen: set[str] = set()
    for model in models:
        if not model.name:
            raise invalid_argument("Model config entry with an empty name")
        if model.name in seen:
            raise invalid_argument(
                f"Illegal to list model {model.name} multiple times in config list"
            )
        seen.add(model.name)
        if not model.base_path:
            raise invalid_argument(f"Model {model.name} has an empty base_path")
        if model.model_platform not in ("", "tensorflow"):
            raise invalid_argument(
                f"Model {model.name} has model_platform {model.model_platform!r}; only "
                "'tensorflow' is supported"
            )
    return models


def write_model_server_config(path: str | os.PathLike, config) -> None:
    """Replaces the model config file atomically (temp file, fsync, rename, fsync dir).

    Raises:
        OSError: the file cannot be written (the old one is left as it was, no temp file).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text_format.MessageToString(config))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves the old file and no partial one
        raise
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
