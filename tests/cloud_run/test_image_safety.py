"""The image builder reads only the model: issue 18 item 4, on real files and a real layer.

Each test builds the model layer from a directory with one hostile entry (a link out of the
model, a FIFO, a loop, a path-like model name) and asserts what a user would see: a clear
ImageBuildError naming the entry, and nothing from outside the model in the layer. The last
tests extract the layer and run its entrypoint as the image's non-root user.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from tfx_serving_ext.cloud_run import image as img
from tfx_serving_ext.cloud_run.errors import ImageBuildError


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph" * 100)
    (model / "variables" / "variables.index").write_bytes(b"index")
    (model / "variables" / "variables.data-00000-of-00001").write_bytes(b"weights" * 1000)
    return model


def layer_members(model: Path, tmp_path: Path, name: str = "m") -> dict[str, bytes | None]:
    layer = img.write_model_layer(model, name, 3, tmp_path / "layer.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.path.read_bytes()))) as tar:
        return {
            m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()
        }


def test_link_to_a_host_file_is_refused_not_put_in_the_layer(model_dir, tmp_path):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:secret\n")
    (model_dir / "variables" / "passwd").symlink_to(secret)

    with pytest.raises(ImageBuildError, match=r"variables/passwd is a symlink to .*outside"):
        img.write_model_layer(model_dir, "m", 3, tmp_path / "layer.tar.gz")


def test_link_to_a_host_directory_is_refused(model_dir, tmp_path):
    credentials = tmp_path / "dot-config"
    credentials.mkdir()
    (credentials / "application_default_credentials.json").write_text("{}")
    (model_dir / "assets").symlink_to(credentials, target_is_directory=True)

    with pytest.raises(ImageBuildError, match=r"assets is a symlink to .*outside"):
        img.write_model_layer(model_dir, "m", 3, tmp_path / "layer.tar.gz")


@pytest.mark.timeout(60)
def test_fifo_is_refused_instead_of_hanging_the_build(model_dir, tmp_path):
    os.mkfifo(model_dir / "variables" / "pipe")

    with pytest.raises(ImageBuildError, match=r"variables/pipe is a FIFO"):
        img.write_model_layer(model_dir, "m", 3, tmp_path / "layer.tar.gz")


def test_symlink_loop_is_a_clear_error(model_dir, tmp_path):
    (model_dir / "variables" / "again").symlink_to("..", target_is_directory=True)

    with pytest.raises(ImageBuildError, match=r"variables/again is a symlink loop"):
        img.write_model_layer(model_dir, "m", 3, tmp_path / "layer.tar.gz")


def test_dangling_and_self_referencing_links_are_clear_errors(model_dir, tmp_path):
    (model_dir / "a").symlink_to(model_dir / "b")
    (model_dir / "b").symlink_to(model_dir / "a")

    with pytest.raises(ImageBuildError, match=r"symlink that cannot be followed"):
        img.write_model_layer(model_dir, "m", 3, tmp_path / "layer.tar.gz")


def test_link_inside_the_model_is_copied_under_its_name(model_dir, tmp_path):
    (model_dir / "assets").mkdir()
    (model_dir / "assets" / "vocab.txt").symlink_to("../variables/variables.index")

    members = layer_members(model_dir, tmp_path)

    assert members["models/m/3/assets/vocab.txt"] == b"index"
    assert members["models/m/3/saved_model.pb"] == b"graph" * 100


@pytest.mark.parametrize("name", ["../../usr/bin", "..", ".hidden", "a/b", "", "m\n"])
def test_model_name_that_is_not_one_path_component_is_refused(model_dir, tmp_path, name):
    with pytest.raises(ImageBuildError, match="model name"):
        img.write_model_layer(model_dir, name, 3, tmp_path / "layer.tar.gz")
    layer = img.Layer(tmp_path / "x", "sha256:0", "sha256:0", 0)
    base = {"os": "linux", "architecture": "amd64", "config": {}}
    with pytest.raises(ImageBuildError, match="model name"):
        img.build_image_config(base, layer, model_name=name, model_version=3, labels={})


def test_image_runs_as_a_non_root_user():
    layer = img.Layer(Path("x"), "sha256:0", "sha256:1", 0)
    base = {"os": "linux", "architecture": "amd64", "config": {"User": ""}}

    config = img.build_image_config(base, layer, model_name="m", model_version=3, labels={})

    user = config["config"]["User"]
    assert user and user.split(":")[0] not in ("0", "root")


def test_labels_carry_no_host_path():
    base = img.ImageReference.parse("example.com/serving:1")
    for local in ("/home/alice/pipeline/Trainer/model/7", "file:///srv/model/7"):
        labels = img.model_labels("m", 7, local, base, "sha256:0")
        assert not any(local in value for value in labels.values()), labels
    remote = img.model_labels("m", 7, "gs://bucket/Trainer/model/7", base, "sha256:0")
    assert remote[f"{img.LABEL_PREFIX}.model-source"] == "gs://bucket/Trainer/model/7"


def test_every_layer_entry_is_readable_by_the_non_root_user(model_dir, tmp_path):
    (model_dir / "variables" / "variables.index").chmod(0o600)  # private on the build host

    layer = img.write_model_layer(model_dir, "m", 3, tmp_path / "layer.tar.gz")

    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.path.read_bytes()))) as tar:
        for member in tar.getmembers():
            wanted = 0o005 if member.isdir() or member.name == img.ENTRYPOINT_PATH else 0o004
            assert member.mode & wanted == wanted, (member.name, oct(member.mode))


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to the image's user needs root")
def test_entrypoint_serves_the_model_as_the_non_root_user(model_dir, tmp_path):
    """Extracts the layer and runs its entrypoint as IMAGE_USER; a shim server reads the model.

    No tensorflow_model_server exists here: the shim stands in for it and reads every file of
    the model it is pointed at, as the real server does when it loads the version.
    """
    (model_dir / "variables" / "variables.index").chmod(0o600)
    layer = img.write_model_layer(model_dir, "m", 3, tmp_path / "layer.tar.gz")
    uid, gid = (int(part) for part in img.IMAGE_USER.split(":"))
    # Outside pytest's 0700 tmp root, so the non-root user can reach it.
    root = Path(tempfile.mkdtemp(prefix="image-root-"))
    try:
        root.chmod(0o755)
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.path.read_bytes()))) as tar:
            tar.extractall(root, filter="tar")
        shim = root / "usr/local/bin/tensorflow_model_server"
        shim.write_text(
            "#!/bin/sh\n"
            'for a in "$@"; do case "$a" in --model_base_path=*) p="${a#*=}";; esac; done\n'
            'find "$p" -type f -exec cat {} + | wc -c\n'
        )
        shim.chmod(0o755)
        proc = subprocess.run(
            ["sh", str(root / img.ENTRYPOINT_PATH)],
            env={
                "PATH": f"{root}/usr/local/bin:/usr/bin:/bin",
                "MODEL_NAME": "m",
                "MODEL_BASE_PATH": f"{root}/models",
            },
            user=uid,
            group=gid,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        shutil.rmtree(root)
    model_bytes = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) == model_bytes
