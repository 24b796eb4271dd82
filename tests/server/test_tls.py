"""`--ssl_config_file`: gRPC over TLS as tensorflow_model_server serves it (SSLConfig of PEM texts).

Certificates are made in the test (a CA, a server certificate for 127.0.0.1/localhost and a client
certificate), so nothing depends on files or time outside it.
"""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.server.conftest import HPT, publish
from tfx_serving_ext.protocol.tensors import ndarray_to_tensor_proto
from tfx_serving_ext.server import ModelServer, ServerOptions
from tfx_serving_ext.server.config_protos import ConfigFileError

BEGIN = "-----BEGIN"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool = False, sans=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def pki() -> dict[str, str]:
    """PEM texts: a CA, a server certificate (127.0.0.1, localhost) and a client certificate."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, "test CA", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        "localhost",
        server_key,
        "test CA",
        ca_key,
        sans=(x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate("a client", client_key, "test CA", ca_key)
    return {
        "ca": _pem(ca),
        "server_cert": _pem(server),
        "server_key": _key_pem(server_key),
        "client_cert": _pem(client),
        "client_key": _key_pem(client_key),
    }


@pytest.fixture(scope="module")
def hpt_base(tmp_path_factory, half_plus_two_dir):
    base = tmp_path_factory.mktemp("tls") / HPT
    publish(half_plus_two_dir, base, 123, name="00000123")
    return base


def _text_proto_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def ssl_config_file(tmp_path, **fields) -> str:
    """Writes a text-format SSLConfig and returns its path."""
    lines = [
        f"{key}: {str(value).lower() if isinstance(value, bool) else _text_proto_string(value)}"
        for key, value in fields.items()
    ]
    path = tmp_path / "ssl_config.pbtxt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def start(hpt_base, config_file: str) -> ModelServer:
    options = ServerOptions(
        model_name=HPT,
        model_base_path=str(hpt_base),
        ssl_config_file=config_file,
        wait_for_initial_models=True,
    )
    return ModelServer(options).start()


def predict(channel: grpc.Channel) -> float:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = HPT
    ndarray_to_tensor_proto(np.asarray([2.0], dtype=np.float32), request.inputs["x"])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = stub.Predict(request, timeout=10)
    return float(response.outputs["y"].float_val[0])


def test_tls_client_predicts_and_a_plaintext_client_is_refused(tmp_path, pki, hpt_base):
    config = ssl_config_file(tmp_path, server_key=pki["server_key"], server_cert=pki["server_cert"])
    server = start(hpt_base, config)
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].encode())
        with grpc.secure_channel(server.grpc_address, credentials) as channel:
            assert predict(channel) == 3.0
        with (
            grpc.insecure_channel(server.grpc_address) as channel,
            pytest.raises(grpc.RpcError) as info,
        ):
            predict(channel)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


def test_client_verify_requires_a_certificate_signed_by_custom_ca(tmp_path, pki, hpt_base):
    config = ssl_config_file(
        tmp_path,
        server_key=pki["server_key"],
        server_cert=pki["server_cert"],
        custom_ca=pki["ca"],
        client_verify=True,
    )
    server = start(hpt_base, config)
    try:
        with_certificate = grpc.ssl_channel_credentials(
            root_certificates=pki["ca"].encode(),
            private_key=pki["client_key"].encode(),
            certificate_chain=pki["client_cert"].encode(),
        )
        with grpc.secure_channel(server.grpc_address, with_certificate) as channel:
            assert predict(channel) == 3.0
        anonymous = grpc.ssl_channel_credentials(root_certificates=pki["ca"].encode())
        with (
            grpc.secure_channel(server.grpc_address, anonymous) as channel,
            pytest.raises(grpc.RpcError) as info,
        ):
            predict(channel)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"server_cert": "-----BEGIN CERTIFICATE-----"}, "has no server_key"),
        ({"server_key": "/etc/tls/key.pem", "server_cert": "/etc/tls/cert.pem"}, "not PEM text"),
        (
            {"server_key": f"{BEGIN} PRIVATE KEY-----\nAAAA\n", "server_cert": f"{BEGIN} X-----"},
            "the key belongs to the certificate",
        ),
        (
            {"server_key": "-----BEGIN ", "server_cert": "-----BEGIN ", "client_verify": True},
            "custom_ca",
        ),
    ],
)
def test_an_unusable_ssl_config_stops_start_up_saying_what_to_fix(
    tmp_path, hpt_base, fields, expected
):
    config = ssl_config_file(tmp_path, **fields)
    with pytest.raises(ConfigFileError) as info:
        start(hpt_base, config)
    assert expected in str(info.value) and "--ssl_config_file" in str(info.value)


def test_an_ssl_config_that_does_not_parse_names_the_file(tmp_path, hpt_base):
    path = tmp_path / "ssl.pbtxt"
    path.write_text('server_key: "x" verify_client: true\n')
    with pytest.raises(ConfigFileError) as info:
        start(hpt_base, str(path))
    assert "tensorflow.serving.SSLConfig" in str(info.value) and str(path) in str(info.value)


def test_a_binary_ssl_config_is_refused_naming_the_file(tmp_path, hpt_base):
    path = tmp_path / "ssl.pbtxt"
    path.write_bytes(b"\xff\xfe\x00 not text")
    with pytest.raises(ConfigFileError) as info:
        start(hpt_base, str(path))
    assert str(path) in str(info.value) and "text-format" in str(info.value)
