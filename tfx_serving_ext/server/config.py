"""Model server configuration: the text-format ModelServerConfig file and the one-model flags."""

from __future__ import annotations

import os
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import file_system_storage_path_source_pb2, model_server_config_pb2

from tfx_serving_ext.serving.status import ServingStatusError, invalid_argument

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig
VersionPolicy = (
    file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy
)


class ModelConfigError(ValueError):
    """The model config file cannot be parsed or describes an invalid set of models."""


def parse_model_server_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    """Returns the ModelServerConfig in `text` (protobuf text format).

    Raises:
        ModelConfigError: the text is not a valid text-format ModelServerConfig.
    """
    config = ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ModelConfigError(
            f"Error parsing text-format tensorflow.serving.ModelServerConfig: {exc}"
        ) from exc
    return config


def read_model_config_file(path: str | os.PathLike) -> model_server_config_pb2.ModelServerConfig:
    """Returns the ModelServerConfig read from the file at `path`.

    Raises:
        ModelConfigError: the file is unreadable or does not parse.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ModelConfigError(f"Cannot read model config file {path}: {exc}") from exc
    return parse_model_server_config(text)


def single_model_config(
    name: str,
    base_path: str | os.PathLike,
    version_policy: str = "latest",
    num_versions: int = 1,
    versions: tuple[int, ...] = (),
) -> model_server_config_pb2.ModelServerConfig:
    """Returns the config `--model_name` / `--model_base_path` stand for.

    `version_policy` is 'latest' (keep the `num_versions` newest), 'all' or 'specific'
    (`versions`).
    """
    config = ModelServerConfig()
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


def model_configs(config: model_server_config_pb2.ModelServerConfig) -> list:
    """Returns the ModelConfigs of `config` after TF Serving's validity checks.

    Raises:
        ServingStatusError: a custom config, a duplicate name, an empty name or base path, or a
            platform other than tensorflow.
    """
    kind = config.WhichOneof("config")
    if kind == "custom_model_config":
        raise ServingStatusError("UNIMPLEMENTED", "custom_model_config is not supported")
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
