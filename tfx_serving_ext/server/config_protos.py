"""TF Serving's MonitoringConfig and SSLConfig protos, read from text-format files.

The tensorflow-serving-api wheel ships neither `monitoring_config_pb2` nor `ssl_config_pb2`, so the
two messages are declared here with tensorflow_serving/config's field names and numbers, in a
descriptor pool of their own: the files `--monitoring_config_file` and `--ssl_config_file` name
parse exactly as tensorflow_model_server parses them (unknown fields and syntax errors refused).
"""

from __future__ import annotations

import functools
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

_F = descriptor_pb2.FieldDescriptorProto


class ConfigFileError(ValueError):
    """A --monitoring_config_file or --ssl_config_file cannot be read or does not parse."""


@functools.cache
def _messages() -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    monitoring = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    prometheus = monitoring.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    config = monitoring.message_type.add(name="MonitoringConfig")
    config.field.add(
        name="prometheus_config",
        number=1,
        type=_F.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
        label=_F.LABEL_OPTIONAL,
    )
    ssl = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ssl_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    ssl_config = ssl.message_type.add(name="SSLConfig")
    for number, name in enumerate(("server_key", "server_cert", "custom_ca"), start=1):
        ssl_config.field.add(name=name, number=number, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    ssl_config.field.add(name="client_verify", number=4, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    pool.Add(monitoring)
    pool.Add(ssl)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        )
        for name in ("MonitoringConfig", "SSLConfig")
    }


def monitoring_config_class() -> type:
    """Returns the tensorflow.serving.MonitoringConfig message class."""
    return _messages()["MonitoringConfig"]


def ssl_config_class() -> type:
    """Returns the tensorflow.serving.SSLConfig message class."""
    return _messages()["SSLConfig"]


def read_text_proto(path: str | Path, message_class: type, flag: str):
    """Returns the text-format message in the file at `path`.

    Raises:
        ConfigFileError: the file cannot be read or does not parse, naming the flag and file.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigFileError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        return text_format.Parse(text, message_class())
    except text_format.ParseError as exc:
        name = message_class.DESCRIPTOR.full_name
        raise ConfigFileError(
            f"{flag}: error parsing text-format {name} in {path}: {exc}"
        ) from None
