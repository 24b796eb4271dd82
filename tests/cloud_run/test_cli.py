"""`tfx-serving-ext cloud-run build|deploy|promote|rollback` end to end.

The registry is a real docker-registry on loopback; the Cloud Run Admin API is the local
stand-in in `fake_run_api` (Google's API cannot be reached from here).
"""

from __future__ import annotations

import json

from tests.cloud_run.conftest import push_base_image
from tests.cloud_run.fake_run_api import start_fake_run_api
from tfx_serving_ext.cli import main


def test_cli_build_deploy_promote_rollback(local_registry, tiny_saved_model, tmp_path, capsys):
    base = push_base_image(local_registry, "base/cli", "1")
    api, server = start_fake_run_api()
    try:
        config = tmp_path / "cloud_run.json"
        config.write_text(
            json.dumps(
                {
                    "image_repository": f"{local_registry.host}/models/cli",
                    "base_image": base.reference,
                    "project": "proj",
                    "region": "europe-west1",
                    "service": "penguin",
                    "model_name": "penguin",
                    "api_endpoint": api.endpoint,
                }
            )
        )
        common = ["--config", str(config)]
        assert (
            main(["cloud-run", "build", str(tiny_saved_model), *common, "--model-version", "1"])
            == 0
        )
        built = json.loads(capsys.readouterr().out)
        assert built["image"].startswith(f"{local_registry.host}/models/cli@sha256:")
        assert built["revision"] == "" and api.requests == []

        for version, percent in (("1", "0"), ("2", "20")):
            argv = ["cloud-run", "deploy", str(tiny_saved_model), *common]
            assert main([*argv, "--model-version", version, "--traffic-percent", percent]) == 0
            deployed = json.loads(capsys.readouterr().out)
        assert deployed["tag_url"] == "https://canary---penguin-abc123-uc.a.run.app"
        assert [t["percent"] for t in deployed["traffic"]] == [20, 80]

        assert main(["cloud-run", "promote", *common]) == 0
        promoted = json.loads(capsys.readouterr().out)
        assert promoted["revision"] == deployed["revision"]
        assert promoted["traffic"][0] == {
            "revision": deployed["revision"],
            "percent": 100,
            "tag": "canary",
        }
        assert main(["cloud-run", "rollback", *common]) == 0
        rolled_back = json.loads(capsys.readouterr().out)
        assert rolled_back["revision"] == deployed["traffic"][1]["revision"]

        # A second rollback has nothing to undo: a clear message and exit code 1.
        assert main(["cloud-run", "rollback", *common]) == 1
        assert "nothing to roll back" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()
