"""A TF-Serving-shaped stand-in image, built with no registry: `tfx-serving-ext/serving-standin`.

The real `tensorflow/serving` image cannot be pulled here. The stand-in honours its contract:
`/usr/bin/tf_serving_entrypoint.sh` runs `tensorflow_model_server --port=8500
--rest_api_port=8501 --model_name=$MODEL_NAME --model_base_path=$MODEL_BASE_PATH/$MODEL_NAME`
with the container's arguments appended (`MODEL_NAME=model`, `MODEL_BASE_PATH=/models`), and
`/usr/bin/tensorflow_model_server` execs the project's embedded server bound to all interfaces,
as the real binary listens. Both `exec`, so SIGTERM reaches the server as PID 1.

Two parts, built in order of how often they change:
- the base (`tfx-serving-ext/serving-base:<key>`, ~2 GB): a Debian root filesystem
  (`debootstrap --variant=minbase` with Debian's python3, from the mirror apt on this machine
  uses) plus the files of every installed distribution the embedded server imports (TensorFlow,
  gRPC, ...), copied from this virtualenv, imported with `docker import`. Its key hashes what
  went in (Python version, each distribution the server imports and its version, the suite,
  this recipe),
  so it is built once per dependency set and kept in the engine's persistent data root; the
  debootstrap tarball (~100 MB, the part that downloads) is cached beside it.
- the top (`docker build` FROM the base): the project's source and the two scripts, a few
  hundred KB, rebuilt every session (the classic builder's cache makes an unchanged one free).

`TF_SERVING_IMAGE=name:tag` makes the tests use that image instead (a real tensorflow/serving
loaded into the engine, e.g. with `docker load`, or `TF_SERVING_IMAGE_ARCHIVE=path.tar`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tests.containers.engine import CACHE_ROOT, REPO_ROOT, DockerEngine

logger = logging.getLogger(__name__)

# Bump when the way the base is built changes. What it holds needs no bump: the key hashes the
# distributions the server actually imports (a new import, e.g. prometheus_client, is a new key).
RECIPE_VERSION = "3"
SUITE = "bookworm"
DEBOOTSTRAP_PACKAGES = ("python3", "ca-certificates")
BASE_REPOSITORY = "tfx-serving-ext/serving-base"
STANDIN_REPOSITORY = "tfx-serving-ext/serving-standin"
STANDIN_TAG = "2.19.1"
SITE_PACKAGES_IN_IMAGE = "usr/local/lib/python3.11/dist-packages"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEBIAN_SOURCES_LIST = Path("/etc/apt/sources.list")
# Modules the embedded server loads: its CLI, the server and the protocol package, walked whole.
SERVER_PACKAGES = ("tfx_serving_ext.server", "tfx_serving_ext.protocol")

TF_SERVING_ENTRYPOINT = """#!/bin/sh
# tensorflow/serving's entrypoint contract: fixed ports, the model from the environment, the
# container's arguments appended; exec so that SIGTERM reaches the server.
exec tensorflow_model_server --port=8500 --rest_api_port=8501 \\
    --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" "$@"
"""

TENSORFLOW_MODEL_SERVER = """#!/bin/sh
# Stand-in for TF Serving's binary: the tfx-serving-ext embedded server with the same flags,
# listening on all interfaces as tensorflow_model_server does, its log on stderr.
exec python3 -m tfx_serving_ext.cli -v serve --host=0.0.0.0 "$@"
"""

DOCKERFILE = """FROM {base}
COPY tfx_serving_ext /{site}/tfx_serving_ext
COPY tensorflow_model_server tf_serving_entrypoint.sh /usr/bin/
ENV MODEL_NAME=model MODEL_BASE_PATH=/models PYTHONDONTWRITEBYTECODE=1
EXPOSE 8500 8501
ENTRYPOINT ["/usr/bin/tf_serving_entrypoint.sh"]
"""


class ImageBuildFailed(RuntimeError):
    """The stand-in image could not be built."""


@dataclass(frozen=True)
class ServingImage:
    """The image the live tests run as TF Serving: its repository and tag, and how long it took."""

    repository: str
    tag: str
    standin: bool
    base_seconds: float = 0.0
    top_seconds: float = 0.0
    base_cached: bool = True

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


def debian_mirror() -> str:
    """Returns the Debian mirror apt on this machine uses (read at run time, never hard-coded)."""
    if DEBIAN_SOURCES.exists():
        for block in DEBIAN_SOURCES.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in block.splitlines() if re.match(r"^[A-Za-z-]+:", line)
            )
            suites = fields.get("Suites", "").split()
            if SUITE in suites and fields.get("URIs"):
                return fields["URIs"].split()[0]
    if DEBIAN_SOURCES_LIST.exists():
        for line in DEBIAN_SOURCES_LIST.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    raise ImageBuildFailed(
        f"no apt source for Debian {SUITE} in {DEBIAN_SOURCES} or {DEBIAN_SOURCES_LIST}"
    )


def base_key(distributions: list[metadata.Distribution]) -> str:
    """Returns the hash of what goes into the base: Python, the server's distributions, the recipe.

    Args:
        distributions: server_distributions(), what the base holds besides Python.
    """
    names = sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions)
    payload = {
        "recipe": RECIPE_VERSION,
        "python": sys.version,
        "suite": SUITE,
        "debootstrap": DEBOOTSTRAP_PACKAGES,
        "distributions": names,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _image_present(engine: DockerEngine, reference: str) -> bool:
    import docker

    client = engine.client()
    try:
        client.images.get(reference)
        return True
    except docker.errors.ImageNotFound:
        return False
    finally:
        client.close()


def _remove_stale_bases(engine: DockerEngine, current: str) -> None:
    """Removes base images of earlier keys (~2 GB each) from the engine's persistent data root."""
    import docker

    client = engine.client()
    try:
        for image in client.images.list(name=BASE_REPOSITORY):
            stale = [tag for tag in image.tags if tag != current]
            if stale and current not in image.tags:
                for tag in stale:
                    logger.warning("Removing the stale stand-in base %s", tag)
                    try:
                        client.images.remove(tag)
                    except docker.errors.APIError as exc:  # still used by a container
                        logger.warning("Could not remove %s: %s", tag, exc)
    finally:
        client.close()


def _debootstrap_tarball() -> Path:
    """Returns the cached minbase rootfs tarball, running debootstrap first when absent."""
    mirror = debian_mirror()
    key = hashlib.sha256(f"{SUITE} {DEBOOTSTRAP_PACKAGES} {mirror}".encode()).hexdigest()[:12]
    tarball = CACHE_ROOT / "rootfs" / f"{SUITE}-minbase-{key}.tar"
    if tarball.exists():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=tarball.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        argv = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(DEBOOTSTRAP_PACKAGES)}",
            SUITE,
            str(rootfs),
            mirror,
        ]
        logger.warning("Building the Debian root filesystem: %s", " ".join(argv))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise ImageBuildFailed(f"debootstrap failed: {(done.stdout + done.stderr)[-3000:]}")
        for junk in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
        ):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], check=True
        )
        partial.rename(tarball)
    return tarball


_CLOSURE_SCRIPT = """
import importlib, json, pkgutil, sys
import tfx_serving_ext.cli as cli
cli.build_parser()
for name in {packages!r}:
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(info.name)
print(json.dumps(sorted({{m.__file__ for m in list(sys.modules.values())
                        if getattr(m, "__file__", None)}})))
"""


def server_distributions() -> list[metadata.Distribution]:
    """Returns the installed distributions whose modules the embedded server imports."""
    done = subprocess.run(
        [sys.executable, "-c", _CLOSURE_SCRIPT.format(packages=SERVER_PACKAGES)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if done.returncode != 0:
        raise ImageBuildFailed(f"importing the server failed: {done.stderr[-3000:]}")
    files = json.loads(done.stdout.strip().splitlines()[-1])
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    tops = set()
    for file in files:
        try:
            tops.add(Path(file).resolve().relative_to(site).parts[0])
        except ValueError:
            continue
    owners = metadata.packages_distributions()
    names = set()
    for top in tops:
        module = top.removesuffix(".py").split(".")[0]
        for name in owners.get(module, []):
            if name != "tfx-serving-ext":
                names.add(name)
    return [metadata.distribution(name) for name in sorted(names)]


def _add_distribution_files(tar: tarfile.TarFile, distribution: metadata.Distribution) -> None:
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    for entry in distribution.files or []:
        source = Path(distribution.locate_file(entry)).resolve()
        try:
            relative = source.relative_to(site)
        except ValueError:
            continue  # scripts in bin/, data files outside site-packages
        if "__pycache__" in relative.parts or not source.is_file():
            continue
        tar.add(source, f"{SITE_PACKAGES_IN_IMAGE}/{relative}", recursive=False)


def _build_base(
    engine: DockerEngine, reference: str, distributions: list[metadata.Distribution]
) -> None:
    rootfs_tarball = _debootstrap_tarball()
    logger.warning(
        "Building %s from %s and %d distributions",
        reference,
        rootfs_tarball.name,
        len(distributions),
    )
    docker_cli = shutil.which("docker", path="/usr/bin") or "docker"
    with tempfile.TemporaryFile() as errors:
        importer = subprocess.Popen(
            [
                docker_cli,
                "import",
                "--message",
                "tfx-serving-ext test stand-in base",
                "-c",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "-",
                reference,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=engine.env(),
        )
        try:
            with tarfile.open(fileobj=importer.stdin, mode="w|") as out:
                with tarfile.open(rootfs_tarball) as rootfs:
                    for member in rootfs:
                        data = rootfs.extractfile(member) if member.isfile() else None
                        out.addfile(member, data)
                for distribution in distributions:
                    _add_distribution_files(out, distribution)
            importer.stdin.close()
            importer.wait(timeout=900)
        except BaseException:
            importer.kill()
            importer.wait()
            raise
        if importer.returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace")[-2000:]
            raise ImageBuildFailed(f"docker import failed: {message}")


def _build_context(dockerfile: str) -> io.BytesIO:
    """Returns the `docker build` context: Dockerfile, the two scripts, the project's source."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add_text(name: str, text: str, mode: int) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))

        add_text("Dockerfile", dockerfile, 0o644)
        add_text("tensorflow_model_server", TENSORFLOW_MODEL_SERVER, 0o755)
        add_text("tf_serving_entrypoint.sh", TF_SERVING_ENTRYPOINT, 0o755)
        source = REPO_ROOT / "tfx_serving_ext"
        for path in sorted(source.rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            info = tar.gettarinfo(str(path), f"tfx_serving_ext/{path.relative_to(source)}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    buffer.seek(0)
    return buffer


def _build_top(engine: DockerEngine, base: str, reference: str) -> None:
    context = _build_context(DOCKERFILE.format(base=base, site=SITE_PACKAGES_IN_IMAGE))
    client = engine.client()
    try:
        client.images.build(fileobj=context, custom_context=True, tag=reference, rm=True)
    except Exception as exc:  # noqa: BLE001 - BuildError, APIError: report the log
        raise ImageBuildFailed(f"docker build of {reference} failed: {exc}") from exc
    finally:
        client.close()


def ensure_serving_image(engine: DockerEngine) -> ServingImage:
    """Returns the TF Serving image the live tests use, building the stand-in when needed.

    Raises:
        ImageBuildFailed: the stand-in could not be built, or TF_SERVING_IMAGE is absent.
    """
    requested = os.environ.get("TF_SERVING_IMAGE")
    if requested:
        repository, _, tag = requested.rpartition(":")
        if not repository or "/" in tag:
            repository, tag = requested, "latest"
        if not _image_present(engine, requested):
            archive = os.environ.get("TF_SERVING_IMAGE_ARCHIVE")
            if not archive:
                raise ImageBuildFailed(
                    f"TF_SERVING_IMAGE={requested} is not in the test engine; set "
                    "TF_SERVING_IMAGE_ARCHIVE=<docker save tarball> to load it"
                )
            client = engine.client()
            try:
                with open(archive, "rb") as handle:
                    client.images.load(handle)
            finally:
                client.close()
        return ServingImage(repository, tag, standin=False)
    began = time.monotonic()
    distributions = server_distributions()
    base = f"{BASE_REPOSITORY}:{base_key(distributions)}"
    cached = _image_present(engine, base)
    if not cached:
        _build_base(engine, base, distributions)
        _remove_stale_bases(engine, base)
    base_seconds = time.monotonic() - began
    began = time.monotonic()
    _build_top(engine, base, f"{STANDIN_REPOSITORY}:{STANDIN_TAG}")
    top_seconds = time.monotonic() - began
    logger.warning(
        "Stand-in image ready: base %s (%.1f s), top layer %.1f s",
        "cached" if cached else "built",
        base_seconds,
        top_seconds,
    )
    return ServingImage(
        STANDIN_REPOSITORY, STANDIN_TAG, True, base_seconds, top_seconds, base_cached=cached
    )
