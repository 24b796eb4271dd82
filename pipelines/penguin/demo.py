"""The demo: the penguin pipeline end to end under LocalDagRunner, in one working directory."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.penguin import DATA_DIR

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo left things."""

    workdir: Path
    serving_model_dir: Path
    pushed_version_dir: Path
    seconds: float


def run_demo(workdir: str | os.PathLike, *, seed: int = 0) -> DemoResult:
    """Runs the penguin pipeline in `workdir`; returns where the pushed model is.

    Raises:
        RuntimeError: the pipeline finished but no version reached the serving directory.
    """
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipelines.penguin.pipeline import create_pipeline
    from tfx_serving_ext.serving.volume import list_versions

    started = time.monotonic()
    workdir = Path(workdir).absolute()
    serving_model_dir = workdir / "serving" / "penguin"
    logger.info("Demo working directory: %s", workdir)
    logger.info("Running the penguin pipeline: CsvExampleGen -> PenguinTrainer -> Pusher")
    LocalDagRunner().run(
        create_pipeline(
            pipeline_root=str(workdir / "pipeline_root"),
            data_root=str(DATA_DIR),
            serving_model_dir=str(serving_model_dir),
            metadata_path=str(workdir / "metadata.sqlite"),
            seed=seed,
        )
    )
    versions = list_versions(serving_model_dir) if serving_model_dir.is_dir() else {}
    if not versions:
        raise RuntimeError(
            f"The pipeline ran but pushed nothing to {serving_model_dir}; see the log above."
        )
    return DemoResult(
        workdir=workdir,
        serving_model_dir=serving_model_dir,
        pushed_version_dir=versions[max(versions)],
        seconds=time.monotonic() - started,
    )
