"""The fleet push against three TF Serving containers sharing one bind-mounted volume.

Three containers of the TF Serving image (the stand-in, or TF_SERVING_IMAGE) run in the private
engine with the same serving volume bind-mounted as their model base path; the third checks
signature method names (`--enable_signature_method_name_check`). Version 1 is published onto the
empty volume first and must be AVAILABLE on all three. A push of a good version 2, its fleet the
three replicas' gRPC addresses, is verified AVAILABLE on every replica. Then a version whose
warmup regresses through a predict-marked signature ends in END on the strict replica only: the
push is refused, the version removed, and every replica serves version 2 again (settled: a
replica may finish a load of version 3 begun before the rollback removed it).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import docker.types

from tests.containers.fixtures import leftovers
from tests.fleet.conftest import save_fleet_model
from tfx_serving_ext.protocol.versions import list_versions
from tfx_serving_ext.publish import volume as serving_volume

MODEL = "m"
CONTAINER_BASE = f"/models/{MODEL}"


@contextlib.contextmanager
def serving_fleet(engine, image, volume: Path):
    """Yields three containers' gRPC addresses in the engine's namespace (the third strict) and
    the containers; removes them on exit."""
    client = engine.client()
    containers = []
    try:
        for strict in (False, False, True):
            args = ["--file_system_poll_wait_seconds=1", "--max_num_load_retries=0"]
            if strict:
                args.append("--enable_signature_method_name_check")
            containers.append(
                client.containers.run(
                    image.reference,
                    args,
                    environment={"MODEL_NAME": MODEL},
                    mounts=[
                        docker.types.Mount(CONTAINER_BASE, str(volume), type="bind", read_only=True)
                    ],
                    ports={"8500/tcp": ("127.0.0.1", None)},
                    detach=True,
                )
            )
        addresses = []
        for container in containers:
            container.reload()
            addresses.append(f"127.0.0.1:{container.ports['8500/tcp'][0]['HostPort']}")
        yield addresses, containers
    finally:
        for container in containers:
            container.remove(force=True)
        client.close()


def logs(containers) -> str:
    return "\n".join(c.logs()[-1500:].decode(errors="replace") for c in containers)


def test_fleet_push_verified_on_three_containers_and_a_failing_replica_rolls_back(
    docker_engine, tf_serving_image, tmp_path
):
    models = tmp_path / "models"
    v1 = save_fleet_model(models / "v1", 1.0, warmup_x=2.0)
    good = save_fleet_model(models / "good", 2.0, warmup_x=2.0)
    faulty = save_fleet_model(models / "faulty", 3.0, regress_warmup=True)
    volume = tmp_path / "serving" / MODEL
    serving_volume.publish_version(v1, volume)

    with serving_fleet(docker_engine, tf_serving_image, volume) as (fleet, containers):
        for address in fleet:
            status = docker_engine.call_in_netns(
                "grpc_model_status", address=address, model_name=MODEL, timeout=180
            )
            assert "states" in status, (address, status, logs(containers))

        pushed = docker_engine.call_in_netns(
            "fleet_push",
            model_dir=str(good),
            base_directory=str(volume),
            model_name=MODEL,
            fleet=fleet,
            timeout=180,
            settle_on=2,
        )
        result = pushed["result"]
        assert (result["pushed"], result["version"], result["verification"]) == (
            True,
            2,
            "available",
        ), (result, logs(containers))
        assert [(r["address"], r["state"]) for r in result["replicas"]] == [
            (address, "AVAILABLE") for address in fleet
        ], result
        assert "AVAILABLE on all 3 replicas" in result["message"], result
        assert [pushed["available_settled"][a] for a in fleet] == [[2], [2], [2]], pushed

        refused = docker_engine.call_in_netns(
            "fleet_push",
            model_dir=str(faulty),
            base_directory=str(volume),
            model_name=MODEL,
            fleet=fleet,
            timeout=180,
            settle_on=2,
        )
        result = refused["result"]
        strict = fleet[2]
        assert (result["pushed"], result["verification"], result["rolled_back"]) == (
            False,
            "load_failed",
            True,
        ), (result, logs(containers))
        assert f"{strict}: END" in result["message"], result
        assert "method_name" in result["message"], result  # the replica's own load error
        assert "every replica serves version 2 again" in result["message"], result
        assert [r["state"] for r in result["replicas"]] == ["ROLLED_BACK"] * 3, result
        # A replica may still finish loading version 3 after the push saw it on 2 (the rollback
        # removed the version while that load ran); its next poll unloads it.
        assert [refused["available_settled"][a] for a in fleet] == [[2], [2], [2]], refused
    assert sorted(list_versions(volume)) == [1, 2]
    assert leftovers(docker_engine) == {"containers": [], "networks": [], "volumes": []}
