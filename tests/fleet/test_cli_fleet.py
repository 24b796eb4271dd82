"""`tfx-serving-ext push --fleet ... --watch` and `versions --fleet` against three replicas."""

from __future__ import annotations

import argparse

import pytest

from tests.fleet.conftest import MODEL, PinnedClients
from tfx_serving_ext.commands._fleet_cli import parse_duration


def test_push_to_a_fleet_with_a_watch_shows_every_replica_and_the_verdict(
    fleet, fleet_models, capsys
):
    from tfx_serving_ext.cli import main

    fleet_arg = ",".join(fleet.grpc)
    with PinnedClients(fleet.grpc, version=1) as pinned:
        code = main(["push", str(fleet_models.errors_on_traffic), str(fleet.base),
                     "--fleet", fleet_arg, "--model-name", MODEL, "--watch", "20s"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1  # the watch rolled it back: the push did not stick
    assert "FAILED: the watch rolled version 2 back" in out
    assert [f"replica {a}: ROLLED_BACK serves version 1 again" for a in fleet.grpc] == [
        line for line in out.splitlines() if line.startswith("replica ")
    ]
    assert "watch: failed after" in out
    # Piped, every replica's state change during verification is a plain line.
    for address in fleet.grpc:
        assert f"  replica {address}: AVAILABLE" in err
    assert "  watch " in err and "errors" in err
    assert pinned.failures == []

    code = main(["push", str(fleet_models.good), str(fleet.base), "--fleet", fleet_arg,
                 "--model-name", MODEL, "--watch", "1s"])  # fmt: skip
    out, _ = capsys.readouterr()
    assert code == 0 and "pushed: version 3 is AVAILABLE on all 3 replicas" in out
    assert "watch: passed" in out

    assert main(["versions", str(fleet.base), "--fleet", fleet_arg, "--model-name", MODEL]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["VERSION", "DIRECTORY", "SIZE", "R1", "R2", "R3", "LABELS"]
    by_version = {row[0]: row for row in rows[1:] if row[0].isdigit()}
    assert by_version["3"][-3:] == ["AVAILABLE"] * 3
    assert by_version["1"][-3:] == ["AVAILABLE"] * 3  # latest { num_versions: 2 }
    assert [row[1] for row in rows if row[0].startswith("R")] == fleet.grpc


def test_durations_read_as_a_person_writes_them():
    assert [parse_duration(t) for t in ("300", "90s", "5m", "1h", "500ms")] == [
        300.0, 90.0, 300.0, 3600.0, 0.5,
    ]  # fmt: skip
    with pytest.raises(argparse.ArgumentTypeError, match="write e.g. 300, 90s, 5m or 1h"):
        parse_duration("five minutes")
