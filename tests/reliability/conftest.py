"""Reliability fixtures: the real penguin pipeline, a served volume, and a client under traffic.

Every test starts from the same state, built once per session by `first_run`: one pipeline run
(version 1 on the volume, its lineage in MLMD). `penguin_home` copies that state (MLMD and the
serving volume) into the test's own directory, so each test's runs are its own; the copied MLMD
still points at the first run's artifacts, which nothing writes to afterwards.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

MODEL_NAME = "penguin"
# Few epochs and a short canary keep a pipeline run at ~30 s on 2 cores.
FAST_RUN = {"epochs": 3, "canary_requests": 20}


@dataclass
class PenguinHome:
    """One test's pipeline root, MLMD file and serving volume."""

    root: Path

    @property
    def pipeline_root(self) -> Path:
        return self.root / "pipeline_root"

    @property
    def metadata_path(self) -> Path:
        return self.root / "metadata.sqlite"

    @property
    def serving(self) -> Path:
        return self.root / "serving" / MODEL_NAME

    def pipeline_args(self, seed: int, **overrides: Any) -> dict[str, Any]:
        """Returns create_pipeline's keyword arguments for a run with `seed`."""
        from pipelines.penguin import DATA_DIR

        return {
            "pipeline_root": str(self.pipeline_root),
            "data_root": str(DATA_DIR),
            "serving_model_dir": str(self.serving),
            "metadata_path": str(self.metadata_path),
            "seed": seed,
            **FAST_RUN,
            **overrides,
        }

    def run_pipeline(self, seed: int, **overrides: Any) -> None:
        """Runs the penguin pipeline once under LocalDagRunner, in this process."""
        from tfx.orchestration.local.local_dag_runner import LocalDagRunner

        from pipelines.penguin.pipeline import create_pipeline

        LocalDagRunner().run(create_pipeline(**self.pipeline_args(seed, **overrides)))

    def latest_output(self, component: str, key: str) -> Path:
        """Returns the newest output directory of `component`'s `key` in this home's root."""
        outputs = list((self.pipeline_root / component / key).iterdir())
        assert outputs, f"{component} wrote no {key} under {self.pipeline_root}"
        return max(outputs, key=lambda p: int(p.name))


@dataclass
class TrafficLog:
    """What the client saw: answers per version (in order) and every failure."""

    versions: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def answered_by(self) -> Counter:
        return Counter(self.versions)


class Traffic(threading.Thread):
    """Sends `predict_features` requests back to back, bounded in count and time."""

    def __init__(self, address: str, max_requests: int = 30_000, max_seconds: float = 400.0):
        super().__init__(name="reliability-traffic", daemon=True)
        self.address, self.max_requests, self.max_seconds = address, max_requests, max_seconds
        self.log = TrafficLog()
        self._halt = threading.Event()

    def run(self) -> None:
        from pipelines.penguin import DATA_DIR
        from pipelines.penguin import model as penguin_model
        from tfx_serving_ext.client.client import ServingClient

        features, _ = penguin_model.read_csv(DATA_DIR / "penguins.csv")
        deadline = time.monotonic() + self.max_seconds
        sent = 0
        with ServingClient(self.address, timeout=30.0) as client:
            while (
                not self._halt.is_set() and sent < self.max_requests and time.monotonic() < deadline
            ):
                row = features[sent % len(features)]
                sent += 1
                inputs = {key: [float(row[i])] for i, key in enumerate(penguin_model.FEATURE_KEYS)}
                try:
                    result = client.predict(
                        MODEL_NAME,
                        inputs,
                        signature_name=penguin_model.FEATURES_SIGNATURE,
                    )
                    self.log.versions.append(result.version)
                except Exception as exc:  # every failure is what the tests look for
                    self.log.errors.append(repr(exc))
                time.sleep(0.01)

    def wait_for_version(self, version: int, count: int = 20, timeout: float = 60.0) -> None:
        """Returns once `version` answered `count` requests in a row at the end of the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tail = self.log.versions[-count:]
            if len(tail) == count and set(tail) == {version}:
                return
            time.sleep(0.1)
        raise AssertionError(
            f"version {version} never answered {count} requests in a row; answered by "
            f"{dict(self.log.answered_by)}, last errors {self.log.errors[-3:]}"
        )

    def stop(self) -> TrafficLog:
        self._halt.set()
        self.join(timeout=60)
        return self.log


@dataclass
class Served:
    """An embedded server polling a test's volume, with a client sending requests to it."""

    home: PenguinHome
    server: Any
    traffic: Traffic

    def served_version(self) -> int:
        """Returns the newest version the server reports AVAILABLE."""
        from tfx_serving_ext.client.client import ServingClient

        with ServingClient(self.server.grpc_address) as client:
            statuses = client.model_status(MODEL_NAME)
        available = [s.version for s in statuses if s.state == "AVAILABLE"]
        assert available, f"nothing AVAILABLE: {statuses}"
        return max(available)


@pytest.fixture(scope="session")
def first_run(tmp_path_factory) -> PenguinHome:
    """A pipeline run with seed 0 that pushed version 1 (shared; copy it, do not modify it)."""
    from tfx_serving_ext.publish.volume import list_versions

    home = PenguinHome(tmp_path_factory.mktemp("first_run"))
    home.run_pipeline(seed=0)
    assert sorted(list_versions(home.serving)) == [1]
    return home


@pytest.fixture
def penguin_home(first_run, tmp_path) -> PenguinHome:
    """This test's copy of `first_run`'s MLMD and serving volume (version 1 pushed)."""
    home = PenguinHome(tmp_path / "home")
    home.root.mkdir()
    shutil.copy2(first_run.metadata_path, home.metadata_path)
    shutil.copytree(first_run.serving, home.serving)
    return home


@pytest.fixture
def served(penguin_home):
    """The embedded server on the test's volume (on version 1) and a client sending to it."""
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.server import ModelServer, ServerOptions

    options = ServerOptions(
        model_name=MODEL_NAME,
        model_base_path=str(penguin_home.serving),
        file_system_poll_wait_seconds=0.2,
        max_num_load_retries=1,
        load_retry_interval_seconds=0.2,
    )
    server = ModelServer(options)
    server.start()
    traffic = None
    try:
        with ServingClient(server.grpc_address) as client:
            assert client.wait_until_available(MODEL_NAME, timeout=120) == 1
        traffic = Traffic(server.grpc_address)
        traffic.start()
        traffic.wait_for_version(1, count=5)
        yield Served(penguin_home, server, traffic)
    finally:
        if traffic is not None:
            traffic.stop()
        server.stop()


def pushed_models(home: PenguinHome) -> list[dict[str, Any]]:
    """Returns every PushedModel in the home's MLMD (oldest first) as {property: value}."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(str(home.metadata_path))
    )
    rows = []
    for artifact in sorted(store.get_artifacts_by_type("PushedModel"), key=lambda a: a.id):
        row: dict[str, Any] = {"uri": artifact.uri}
        for key, value in artifact.custom_properties.items():
            row[key] = value.string_value if value.HasField("string_value") else value.int_value
        rows.append(row)
    return rows
