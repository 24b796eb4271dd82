"""The endpoint backend against a fleet: every replica gets the canary model, every replica gets
the fleet's config back, and that config is the fleet's config file as it reads at the end.

The replicas are embedded servers on loopback polling one volume and one config file (as the
replicas of a Kubernetes Deployment mount one volume), never re-reading the file themselves.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tfx.proto import infra_validator_pb2

from tfx_serving_ext.canary.backends.base import BackendError, CanaryModels
from tfx_serving_ext.canary.backends.endpoint import CANARY_DIR, EndpointBackend
from tfx_serving_ext.canary.run import CanaryConfig, run_canary
from tfx_serving_ext.client.client import ServingClient, ServingError
from tfx_serving_ext.protocol.model_config import model_server_config, write_model_server_config
from tfx_serving_ext.publish import volume
from tfx_serving_ext.server import ModelServer, ServerOptions


@contextlib.contextmanager
def serving_fleet(
    config_file: Path,
    hosts: list[str],
    *,
    same_port: bool,
    model: str = "penguin",
    strict: tuple[bool, ...] = (),
) -> Iterator[list[str]]:
    """Yields the gRPC addresses of one replica per host serving `config_file`, all loaded.

    With `same_port`, every replica listens on the first one's port (as pods behind a headless
    Service do), each on its own loopback address. `strict[i]` turns on replica i's
    `enable_signature_method_name_check`.
    """
    servers: list[ModelServer] = []
    try:
        for index, host in enumerate(hosts):
            port = servers[0].grpc_port if servers and same_port else 0
            options = ServerOptions(
                model_config_file=str(config_file),
                host=host,
                port=port,
                file_system_poll_wait_seconds=0.2,
                enable_rest=False,
                enable_signature_method_name_check=index < len(strict) and strict[index],
            )
            servers.append(ModelServer(options).start())
        addresses = [server.grpc_address for server in servers]
        for address in addresses:
            with ServingClient(address) as client:
                client.wait_until_available(model, timeout=60)
        yield addresses
    finally:
        for server in servers:
            server.stop()


def _volume(tmp_path: Path, canary_models) -> tuple[Path, Path]:
    """Returns (base path, config file): version 1 of penguin, served from a config file."""
    base = tmp_path / "volume" / "penguin"
    volume.publish_version(canary_models["good"], base)
    config_file = tmp_path / "models.config"
    write_model_server_config(config_file, model_server_config([("penguin", base)]))
    return base, config_file


def _states(address: str, name: str) -> list[tuple[int, str]] | str:
    """Returns the (version, state) pairs a replica reports for a model, or the error code."""
    with ServingClient(address) as client:
        try:
            return [(s.version, s.state) for s in client.model_status(name)]
        except ServingError as exc:
            return exc.code


def _unloaded(states) -> bool:
    # TF Serving reports a model dropped from its config as END, or forgets it (NOT_FOUND).
    return states in ("NOT_FOUND", [(1, "END")])


def test_a_dns_name_stages_and_removes_the_candidate_on_every_replica(canary_models, tmp_path):
    """dns:///tf-serving-headless:PORT has one record per replica. No DNS server with several
    A records can run here, so the lookup (socket.getaddrinfo's signature) answers with the
    three loopback addresses the real replicas listen on; all else is real."""
    base, config_file = _volume(tmp_path, canary_models)
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    with serving_fleet(config_file, hosts, same_port=True) as replicas:
        port = int(replicas[0].rpartition(":")[2])
        looked_up = []

        def headless_service(host, port, type=0):
            looked_up.append((host, port))
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in hosts]

        backend = EndpointBackend(
            CanaryModels("penguin", canary_models["disagree"]),
            f"dns:///tf-serving-headless:{port}",
            base,
            model_config_file=config_file,
            resolver=headless_service,
        )
        try:
            backend.start()
            backend.wait_until_running(deadline=time.time() + 60)
            during = {r: _states(r, backend.canary_model_name) for r in replicas}
            endpoint = backend.get_endpoint()
            identity = backend.identity()
        finally:
            backend.stop()
        after = {r: _states(r, backend.canary_model_name) for r in replicas}
        live = {r: _states(r, "penguin") for r in replicas}
    assert looked_up == [("tf-serving-headless", port)]
    assert during == {r: [(1, "AVAILABLE")] for r in replicas}
    assert endpoint == replicas[0]
    assert identity["replicas"] == replicas
    assert all(_unloaded(states) for states in after.values()), after
    assert live == {r: [(1, "AVAILABLE")] for r in replicas}
    assert sorted(volume.list_versions(base)) == [1]
    assert not any((base / CANARY_DIR).iterdir())


def test_a_canary_over_a_list_of_replicas_judges_on_one_and_leaves_all_as_they_were(
    canary_models, penguin_records, tmp_path
):
    base, config_file = _volume(tmp_path, canary_models)
    with serving_fleet(config_file, ["127.0.0.1", "127.0.0.1"], same_port=False) as replicas:
        result = run_canary(
            canary_models["disagree"],
            examples=penguin_records,
            output_dir=tmp_path / "report",
            config=CanaryConfig(
                num_requests=20,
                backend="endpoint",
                endpoint_address=", ".join(replicas),
                endpoint_base_path=str(base),
                endpoint_model_config_file=str(config_file),
            ),
            serving_spec=infra_validator_pb2.ServingSpec(model_name="penguin"),
            validation_spec=infra_validator_pb2.ValidationSpec(
                max_loading_time_seconds=60, num_tries=1
            ),
        )
        target = result.report["candidate"]["target"].split("@")[0]
        after = {r: (_states(r, "penguin"), _states(r, target)) for r in replicas}
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert not result.blessed
    assert "top class identical to the baseline on 0.0%" in report["verdict"]["reasons"][0]
    assert report["server"]["address"] == ", ".join(replicas)
    assert report["server"]["replicas"] == replicas
    for replica, (live, canary) in after.items():
        assert live == [(1, "AVAILABLE")], replica
        assert _unloaded(canary), (replica, canary)


def test_stop_restores_the_config_file_as_it_reads_at_stop(canary_models, tmp_path):
    """A push during the canary added a model to the fleet's config file: it stays served."""
    base, config_file = _volume(tmp_path, canary_models)
    other = tmp_path / "volume" / "other"
    volume.publish_version(canary_models["good"], other)
    with serving_fleet(config_file, ["127.0.0.1"], same_port=False) as [replica]:
        backend = EndpointBackend(
            CanaryModels("penguin", canary_models["disagree"]),
            replica,
            base,
            model_config_file=config_file,
        )
        try:
            backend.start()
            backend.wait_until_running(deadline=time.time() + 60)
            write_model_server_config(
                config_file, model_server_config([("penguin", base), ("other", other)])
            )
        finally:
            backend.stop()
        with ServingClient(replica) as client:
            client.wait_until_available("other", timeout=30)
            served = {name: _states(replica, name) for name in ("penguin", "other")}
        canary = _states(replica, backend.canary_model_name)
    assert served == {"penguin": [(1, "AVAILABLE")], "other": [(1, "AVAILABLE")]}
    assert _unloaded(canary), canary


def test_stop_falls_back_to_the_start_config_when_the_file_is_gone(canary_models, tmp_path, caplog):
    base, config_file = _volume(tmp_path, canary_models)
    with serving_fleet(config_file, ["127.0.0.1"], same_port=False) as [replica]:
        backend = EndpointBackend(
            CanaryModels("penguin", canary_models["disagree"]),
            replica,
            base,
            model_config_file=config_file,
        )
        try:
            backend.start()
            backend.wait_until_running(deadline=time.time() + 60)
            config_file.unlink()
        finally:
            with caplog.at_level(logging.ERROR):
                backend.stop()
        served = _states(replica, "penguin")
        canary = _states(replica, backend.canary_model_name)
    assert served == [(1, "AVAILABLE")]
    assert _unloaded(canary), canary
    assert f"model config file {config_file} does not exist" in caplog.text
    assert "restoring the config read at start" in caplog.text


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("", "the endpoint address is empty"),
        ("http://tf-serving:8501", "must be host:port (gRPC) or dns:///name:port"),
        ("tf-serving", "must be host:port (gRPC) or dns:///name:port"),
    ],
)
def test_an_address_that_names_no_grpc_replica_is_refused_before_anything_is_staged(
    canary_models, tmp_path, address, expected
):
    with pytest.raises(BackendError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        EndpointBackend(CanaryModels("penguin", canary_models["good"]), address, tmp_path)


def test_a_dns_name_without_records_is_refused_naming_the_name(canary_models, tmp_path):
    def no_records(host, port, type=0):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    backend = EndpointBackend(
        CanaryModels("penguin", canary_models["good"]),
        "dns:///tf-serving-headless:8500",
        tmp_path,
        resolver=no_records,
    )
    with pytest.raises(BackendError, match="tf-serving-headless does not resolve"):
        backend.start()
    assert not (tmp_path / CANARY_DIR).exists()


def test_a_candidate_that_loads_on_the_canarys_replica_only_is_refused_naming_the_other(
    tmp_path,
):
    """The second replica checks signature method names: the candidate's Regress warmup ends
    its load in END there (see tests/fleet/conftest.py), while the first replica loads it."""
    from tests.fleet.conftest import save_fleet_model

    base = tmp_path / "volume" / "m"
    volume.publish_version(save_fleet_model(tmp_path / "v1", 1.0), base)
    candidate = save_fleet_model(tmp_path / "candidate", 3.0, regress_warmup=True)
    config_file = tmp_path / "models.config"
    write_model_server_config(config_file, model_server_config([("m", base)]))
    hosts = ["127.0.0.1", "127.0.0.1"]
    with serving_fleet(
        config_file, hosts, same_port=False, model="m", strict=(False, True)
    ) as replicas:
        backend = EndpointBackend(
            CanaryModels("m", candidate), ",".join(replicas), base, model_config_file=config_file
        )
        try:
            backend.start()
            with pytest.raises(BackendError) as refused:
                backend.wait_until_running(deadline=time.time() + 60)
        finally:
            backend.stop()
        after = {r: (_states(r, "m"), _states(r, backend.canary_model_name)) for r in replicas}
    message = str(refused.value)
    assert message.startswith(f"the candidate loaded on {replicas[0]} but not on {replicas[1]}: ")
    assert "align them and run again" in message
    for replica, (live, canary) in after.items():
        assert live == [(1, "AVAILABLE")], replica
        assert _unloaded(canary), (replica, canary)
