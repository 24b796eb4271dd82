"""Runs the penguin pipeline with LocalDagRunner (MLMD in SQLite).

Also the file to hand to the tfx CLI:
    tfx pipeline create --engine=local --pipeline_path=$PWD/pipelines/penguin/local_runner.py
    tfx run create --engine=local --pipeline_name=penguin-serving
Settings come from environment variables so that the tfx CLI can run it unchanged:
PENGUIN_HOME (default ./_penguin_home) holds the pipeline root, MLMD and the serving volume.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from pipelines.penguin import DATA_DIR
from pipelines.penguin.pipeline import create_pipeline


def main() -> None:
    home = Path(os.environ.get("PENGUIN_HOME", "_penguin_home")).absolute()
    LocalDagRunner().run(
        create_pipeline(
            pipeline_root=str(home / "pipeline_root"),
            data_root=str(DATA_DIR),
            serving_model_dir=str(home / "serving" / "penguin"),
            metadata_path=str(home / "metadata.sqlite"),
            seed=int(os.environ.get("PENGUIN_SEED", "0")),
        )
    )


if __name__ == "__main__":
    main()
