"""The pipeline SIGKILLed in the middle of the pusher's copy: the next run completes cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.reliability.conftest import pushed_models
from tfx_serving_ext.publish.volume import STAGING_PREFIX, list_versions

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[2]
# Runs the pipeline with the volume copy slowed through publish_version's progress hook: the
# child says "copying" once the first file of the version is in the staging directory, then
# stalls there until it is killed.
STALLED_PIPELINE = textwrap.dedent(
    """
    import json, sys, time
    from tfx_serving_ext.publish import volume

    publish_version = volume.publish_version

    def stalled_publish(model_dir, base_path, *, progress=None):
        def stall(done, total):
            print(f"copying {done}/{total}", flush=True)
            time.sleep(600)
        return publish_version(model_dir, base_path, progress=stall)

    volume.publish_version = stalled_publish
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from pipelines.penguin.pipeline import create_pipeline

    LocalDagRunner().run(create_pipeline(**json.loads(sys.argv[1])))
    """
)


def run_and_kill_mid_copy(args: dict, log_path: Path, timeout: float = 400.0) -> str:
    """Returns the child's "copying" line after SIGKILLing the pipeline process on it."""
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", STALLED_PIPELINE, json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=REPO,
        )
    watchdog = threading.Timer(timeout, child.kill)  # never wait forever on a stuck child
    watchdog.start()
    try:
        for line in child.stdout:
            if line.startswith("copying"):
                os.kill(child.pid, signal.SIGKILL)
                return line.strip()
        raise AssertionError(
            f"the pipeline ended (rc {child.wait()}) before the pusher copied anything; "
            f"log tail: {log_path.read_text()[-3000:]}"
        )
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()


def staging_dirs(base: Path) -> list[Path]:
    return [p for p in base.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_pipeline_killed_mid_copy_leaves_no_partial_version_and_next_run_completes(
    served, tmp_path
):
    home = served.home
    address = served.server.grpc_address
    line = run_and_kill_mid_copy(
        home.pipeline_args(1, server_address=address), tmp_path / "killed_run.log"
    )
    done, total = (int(n) for n in line.split()[1].split("/"))
    assert 0 < done < total, line  # killed with part of the model copied

    [partial] = staging_dirs(home.serving)  # under a name TF Serving ignores
    assert sorted(list_versions(home.serving)) == [1]
    served.traffic.wait_for_version(1, count=30)  # several polls with the partial copy present
    assert served.served_version() == 1

    home.run_pipeline(2, server_address=address)
    versions = list_versions(home.serving)
    # Number 2 was claimed by the killed push and is never reused.
    assert sorted(versions) == [1, 3]
    assert staging_dirs(home.serving) == [] and not partial.exists()
    assert (versions[3] / "saved_model.pb").is_file()
    assert (versions[3] / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert served.served_version() == 3
    served.traffic.wait_for_version(3)
    log = served.traffic.stop()
    assert log.errors == []
    assert set(log.versions) == {1, 3}

    *_, last = pushed_models(home)
    assert (last["pushed"], last["pushed_version"], last["verification"]) == (1, "3", "available")
