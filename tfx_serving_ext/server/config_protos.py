"""TF Serving's MonitoringConfig, SSLConfig and BatchingParameters protos, from text-format files.

The tensorflow-serving-api wheel ships neither `monitoring_config_pb2`, `ssl_config_pb2` nor
`session_bundle_config_pb2`, so the three messages are declared here with TF Serving's field
names, numbers and types, in a descriptor pool of their own: the files `--monitoring_config_file`,
`--ssl_config_file` and `--batching_parameters_file` name parse exactly as tensorflow_model_server
parses them (unknown fields and syntax errors refused).
"""

from __future__ import annotations

import functools
from pathlib import Path

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

_F = descriptor_pb2.FieldDescriptorProto

# (name, number, wrapper message or scalar) as in servables/tensorflow/session_bundle_config.proto.
BATCHING_FIELDS = (
    ("max_batch_size", 1, ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 3, ".google.protobuf.Int64Value"),
    ("num_batch_threads", 4, ".google.protobuf.Int64Value"),
    ("thread_pool_name", 5, ".google.protobuf.StringValue"),
    ("allowed_batch_sizes", 6, "repeated int64"),
    ("pad_variable_length_inputs", 7, "bool"),
    ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue"),
    ("max_execution_batch_size", 9, ".google.protobuf.Int64Value"),
)


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
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    batching = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    parameters = batching.message_type.add(name="BatchingParameters")
    for name, number, kind in BATCHING_FIELDS:
        entry = parameters.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL)
        if kind.startswith("."):
            entry.type, entry.type_name = _F.TYPE_MESSAGE, kind
        elif kind == "bool":
            entry.type = _F.TYPE_BOOL
        else:
            entry.type, entry.label = _F.TYPE_INT64, _F.LABEL_REPEATED
    for file in (monitoring, ssl, batching):
        pool.Add(file)
    return {
        name: _message_class(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("MonitoringConfig", "SSLConfig", "BatchingParameters")
    }


def _message_class(descriptor) -> type:
    # protobuf >= 4.22 has GetMessageClass; the protobuf of TFX 1.16 (4.21) only the factory.
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(descriptor.file.pool).GetPrototype(descriptor)


def monitoring_config_class() -> type:
    """Returns the tensorflow.serving.MonitoringConfig message class."""
    return _messages()["MonitoringConfig"]


def ssl_config_class() -> type:
    """Returns the tensorflow.serving.SSLConfig message class."""
    return _messages()["SSLConfig"]


def batching_parameters_class() -> type:
    """Returns the tensorflow.serving.BatchingParameters message class."""
    return _messages()["BatchingParameters"]


def read_text_proto(path: str | Path, message_class: type, flag: str):
    """Returns the text-format message in the file at `path`.

    Raises:
        ConfigFileError: the file cannot be read or does not parse, naming the flag and file.
    """
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc  # UnicodeDecodeError has no strerror
        raise ConfigFileError(
            f"{flag}: cannot read {path}: {reason}; give a text-format protobuf file"
        ) from None
    try:
        return text_format.Parse(text, message_class())
    except text_format.ParseError as exc:
        name = message_class.DESCRIPTOR.full_name
        raise ConfigFileError(
            f"{flag}: error parsing text-format {name} in {path}: {exc}"
        ) from None
