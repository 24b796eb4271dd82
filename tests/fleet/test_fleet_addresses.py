"""A malformed `--fleet` entry is the user's input refused (exit 2); a name that does not resolve
is a fleet that cannot be reached (exit 1). Neither publishes anything.

A bare `127.0.0.1` used to go to gRPC's default port 443 and end as "unreachable" (exit 1).
"""

from __future__ import annotations

import pytest

from tests.fleet.conftest import MODEL
from tfx_serving_ext.cli import main
from tfx_serving_ext.commands._exit_codes import EXIT_FAILED_VERIFICATION, EXIT_REFUSED
from tfx_serving_ext.protocol.versions import list_versions
from tfx_serving_ext.publish import volume
from tfx_serving_ext.publish.fleet import FleetError, check_fleet_entry
from tfx_serving_ext.publish.push import VolumePushConfig
from tfx_serving_ext.publish.push_config import PushConfigError

ACCEPTED_FORMS = "write host:port or [ipv6]:port (gRPC), unix:/path (a gRPC socket), http://host"


@pytest.fixture
def one_version(tmp_path, fleet_models):
    base = tmp_path / "serving" / MODEL
    volume.publish_version(fleet_models.v1, base)
    return base


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("127.0.0.1", "has no port"),
        ("tf-serving", "has no port"),
        ("http://127.0.0.1", "has no port"),
        ("[::1]", "has no port"),
        ("dns:///tf-serving-headless", "has no port"),
        ("127.0.0.1:http", "has no valid port after '127.0.0.1'"),
        ("127.0.0.1:70000", "has no valid port after '127.0.0.1'"),
        ("::1:8500", "is an IPv6 address without brackets ([ipv6]:port)"),
        ("[::1:8500", "has no closing ] after its IPv6 address"),
        ("http://127.0.0.1:8501/v1/models/m", "has a path: give the replica's REST root"),
        ("grpc://127.0.0.1:8500", "has a scheme that is not http://, https:// or dns:///"),
        ("dns://tf-serving:8500", "has a scheme that is not http://, https:// or dns:///"),
        (":8500", "has no host"),
    ],
)
def test_push_refuses_a_malformed_fleet_entry_naming_it_and_the_accepted_forms(
    one_version, fleet_models, capsys, entry, problem
):
    code = main(["push", str(fleet_models.good), str(one_version), "--fleet", entry,
                 "--model-name", MODEL])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_REFUSED, err
    [line] = error_lines(err)
    assert line.startswith(f"error: fleet entry {entry!r} {problem}: {ACCEPTED_FORMS}")
    assert "dns:///name:port" in line
    assert line.endswith(
        "the port is required, none is assumed (TF Serving's defaults: 8500 for gRPC, 8501 "
        "for REST)"
    )
    assert sorted(list_versions(one_version)) == [1]


def test_a_comma_list_with_one_bad_entry_is_refused_for_that_entry(
    one_version, fleet_models, capsys
):
    code = main(["push", str(fleet_models.good), str(one_version), "--fleet",
                 "127.0.0.1:8500,127.0.0.2", "--model-name", MODEL])  # fmt: skip
    [line] = error_lines(capsys.readouterr().err)
    assert code == EXIT_REFUSED
    assert line.startswith("error: fleet entry '127.0.0.2' has no port")


def test_a_well_formed_name_that_does_not_resolve_is_unreachable_not_refused(
    one_version, fleet_models, capsys
):
    """`.invalid` never resolves (RFC 2606): the fleet cannot be reached, the input was fine."""
    code = main(["push", str(fleet_models.good), str(one_version), "--fleet",
                 "dns:///tf-serving.invalid:8500", "--model-name", MODEL])  # fmt: skip
    out = capsys.readouterr().out
    assert code == EXIT_FAILED_VERIFICATION
    assert "FAILED: fleet not usable, nothing published" in out
    assert "tf-serving.invalid does not resolve" in out
    assert sorted(list_versions(one_version)) == [1]


def test_the_pusher_refuses_a_malformed_fleet_entry_in_its_config(tmp_path):
    with pytest.raises(PushConfigError, match=r"fleet entry '127\.0\.0\.1' has no port: write"):
        VolumePushConfig(str(tmp_path), fleet=["127.0.0.1"])
    several = "10.0.0.1:8500,10.0.0.2:8500"
    with pytest.raises(PushConfigError, match=f"fleet entry '{several}' holds several addresses"):
        VolumePushConfig.from_json({"base_directory": str(tmp_path), "fleet": several})


def test_the_pusher_refuses_a_server_address_without_a_port_naming_that_option(tmp_path):
    """Not a fleet error about an option the user did not set, nor gRPC's default port 443."""
    with pytest.raises(PushConfigError, match=r"server_address '127\.0\.0\.1' has no port"):
        VolumePushConfig(str(tmp_path), server_address="127.0.0.1")
    VolumePushConfig(str(tmp_path), server_address="127.0.0.1:8500")


@pytest.mark.parametrize(
    "entry",
    [
        "127.0.0.1:8500",
        "tf-serving-0.tf-serving:8500",
        "[::1]:8500",
        "http://127.0.0.1:8501",
        "https://tf-serving.example:443/",
        "dns:///tf-serving-headless:8500",
        "unix:/run/tf-serving.sock",
    ],
)
def test_every_accepted_form_passes(entry):
    check_fleet_entry(entry)


def test_an_empty_fleet_names_the_accepted_forms():
    from tfx_serving_ext.publish.fleet import resolve_fleet

    with pytest.raises(FleetError, match="the fleet is empty: give replica addresses, each host"):
        resolve_fleet([])


def test_a_dns_entry_with_a_bracketed_ipv6_literal_resolves_to_that_replica():
    """`dns:///[::1]:8500` passes the entry check, so it must resolve too: the brackets are the
    address's syntax, not part of the name looked up (the system resolver, no stand-in)."""
    from tfx_serving_ext.publish.fleet import resolve_fleet

    assert resolve_fleet(["dns:///[::1]:8500"]) == ["[::1]:8500"]
    assert resolve_fleet(["dns:///127.0.0.1:8500"]) == ["127.0.0.1:8500"]
