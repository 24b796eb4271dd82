"""`push --help`'s exit code 3 tells an I/O error before publishing from one after it.

Before publishing nothing is on the volume; after it (the model config written for a label,
retention) the version is there and the error line says which versions the volume holds. The
help used to promise "nothing published" for both.
"""

from __future__ import annotations

import pytest

from tests.fleet.conftest import MODEL, save_fleet_model, write_config
from tests.pusher.small_filesystem import fill, mounted
from tfx_serving_ext.cli import main
from tfx_serving_ext.commands._exit_codes import EXIT_IO_ERROR
from tfx_serving_ext.protocol.versions import list_versions
from tfx_serving_ext.publish import volume


def exit_code_line(help_text: str, code: int) -> str:
    """Returns the help's line for `code`, its continuation lines joined on."""
    table = help_text.split("\nexit codes:\n", 1)[1]
    entries = table.replace("\n     ", " ").splitlines()
    return next(line.strip() for line in entries if line.startswith(f"  {code}  "))


def test_push_help_says_what_an_io_error_leaves_before_and_after_publishing(capsys):
    with pytest.raises(SystemExit):
        main(["push", "--help"])
    line = exit_code_line(capsys.readouterr().out, EXIT_IO_ERROR)
    assert line.startswith("3  I/O error (disk full, permission denied, read-only volume)")
    assert "before publishing: nothing published, no temporary file left" in line
    assert (
        "after it (writing the model config, retention): the error line says which versions "
        "the volume holds now" in line
    )


def test_a_label_write_failing_after_publishing_says_what_the_volume_holds(tmp_path, capsys):
    """The model config lives on a real tmpfs that is full: the push publishes, the server
    serves the new version, then writing the label fails with ENOSPC (root only), leaving the
    old config file and no temp file."""
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.server import ModelServer, ServerOptions

    base = tmp_path / "serving" / MODEL
    volume.publish_version(save_fleet_model(tmp_path / "v1", 1.0), base)
    new_model = save_fleet_model(tmp_path / "v2", 2.0)
    with mounted("tmpfs", tmp_path / "configs") as configs:
        config_file = write_config(configs / "models.config", base)
        options = ServerOptions(
            model_config_file=str(config_file),
            model_config_file_poll_wait_seconds=0.2,
            file_system_poll_wait_seconds=0.1,
        )
        with ModelServer(options) as server:
            with ServingClient(server.grpc_address) as client:
                client.wait_until_available(MODEL, version=1, timeout=60)
            fill(configs)
            capsys.readouterr()
            code = main(["push", str(new_model), str(base), "--server",
                         server.grpc_address, "--model-name", MODEL, "--model-config-file",
                         str(config_file), "--label", "stable=new"])  # fmt: skip
        left_on_the_full_disk = sorted(path.name for path in configs.iterdir())
    err = capsys.readouterr().err
    assert code == EXIT_IO_ERROR, err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: I/O error: no space left on the device")
    assert f"the versions on {base} are now [1, 2] (were [1])" in line
    assert "no new version is on the volume" not in line
    assert sorted(list_versions(base)) == [1, 2]
    assert left_on_the_full_disk == ["filler", "models.config"], "a temp config was left behind"
