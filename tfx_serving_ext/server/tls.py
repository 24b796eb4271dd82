"""gRPC TLS from TF Serving's `--ssl_config_file` (a text-format tensorflow.serving.SSLConfig).

As tensorflow_model_server: the file holds the PEM texts themselves (`server_key`,
`server_cert`, optional `custom_ca`), not paths; `client_verify: true` requires every client
to present a certificate signed by `custom_ca`. Only gRPC is encrypted; REST stays plain HTTP, as
there.
"""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc

from tfx_serving_ext.server.config_protos import ConfigFileError, read_text_proto, ssl_config_class

FLAG = "--ssl_config_file"


def read_ssl_config(path: str | Path):
    """Returns the SSLConfig in the text-format file at `path`, checked for use.

    Raises:
        ConfigFileError: the file does not parse, lacks server_key or server_cert, holds a
            field that is not PEM text, or asks for client_verify without custom_ca.
    """
    config = read_text_proto(path, ssl_config_class(), FLAG)
    for field in ("server_key", "server_cert"):
        if not getattr(config, field).strip():
            raise ConfigFileError(f"{FLAG}: {path} has no {field} (the PEM text itself)")
    for field in ("server_key", "server_cert", "custom_ca"):
        value = getattr(config, field)
        if value and "-----BEGIN " not in value:
            raise ConfigFileError(
                f"{FLAG}: {field} in {path} is not PEM text: put the contents of the file "
                "(-----BEGIN ...), not its path, as tensorflow_model_server expects"
            )
    if config.client_verify and not config.custom_ca:
        raise ConfigFileError(
            f"{FLAG}: client_verify needs custom_ca in {path} "
            "(the CA that signs the client certificates)"
        )
    return config


def server_credentials(config) -> grpc.ServerCredentials:
    """Returns gRPC server credentials for an SSLConfig, checked to be usable.

    Raises:
        ConfigFileError: gRPC cannot serve TLS with the key, certificate and CA given (a PEM
            block that does not decode, or a key that does not match the certificate).
    """
    credentials = grpc.ssl_server_credentials(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() if config.custom_ca else None,
        require_client_auth=bool(config.client_verify),
    )
    # gRPC only finds out when a port is added, and then says "Failed to bind": try it on a
    # throwaway loopback server, so that the message names the real problem.
    probe = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    try:
        usable = probe.add_secure_port("127.0.0.1:0", credentials) != 0
    except RuntimeError:
        usable = False
    finally:
        probe.stop(None)
    if not usable:
        raise ConfigFileError(
            f"{FLAG}: gRPC cannot serve TLS with this server_key, server_cert and custom_ca: "
            "check that each is a complete PEM block and that the key belongs to the certificate"
        )
    return credentials
