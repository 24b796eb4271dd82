"""What the container tests need from the machine, and installing it from Debian's packages.

Each need is a command and the Debian package that provides it. `ensure_installed` installs the
missing packages when it can (root with apt-get), so a fresh machine gets them from `make test`;
otherwise it returns what is missing and `install_command` names the one command that would
enable the tests. The mirror is whatever apt on this machine is configured with.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

APT_TIMEOUT_SECONDS = 600
# policy-rc.d exiting 101 stops a package's postinst from starting its service (dockerd on the
# host network, docker-registry on :5000): the tests start their own, in a network namespace.
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


@dataclass(frozen=True)
class Need:
    """A command the container tests run and the Debian package that ships it."""

    command: str
    package: str


DOCKER_ENGINE = (
    Need("dockerd", "docker.io"),
    Need("docker", "docker.io"),
    Need("ip", "iproute2"),
    Need("nsenter", "util-linux"),
)
IMAGE_BUILD = (Need("debootstrap", "debootstrap"),)
REGISTRY = (Need("docker-registry", "docker-registry"), Need("skopeo", "skopeo"))
ALL_NEEDS = DOCKER_ENGINE + IMAGE_BUILD + REGISTRY

# Debian's docker CLI: /usr/local/bin may hold another `docker` that is not the engine's client.
DOCKER_CLI_CANDIDATES = ("/usr/bin/docker",)


def find_command(command: str) -> str | None:
    """Returns the path of `command` (the Debian docker CLI for `docker`), or None."""
    if command == "docker":
        for candidate in DOCKER_CLI_CANDIDATES:
            if os.access(candidate, os.X_OK):
                return candidate
        return None
    for directory in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        path = Path(directory) / command
        if os.access(path, os.X_OK):
            return str(path)
    return shutil.which(command)


def missing(needs: tuple[Need, ...]) -> list[Need]:
    """Returns the needs whose command is not on this machine."""
    return [need for need in needs if find_command(need.command) is None]


def install_command(needs: list[Need]) -> str:
    """Returns the shell command that installs the packages `needs` name (as root)."""
    packages = " ".join(sorted({need.package for need in needs}))
    return f"apt-get update && apt-get install -y --no-install-recommends {packages}"


def can_install() -> bool:
    """Returns whether this process may install Debian packages (root and apt-get present)."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def install(needs: list[Need]) -> str | None:
    """Installs the packages of `needs` with apt-get; returns None, or why it failed."""
    packages = sorted({need.package for need in needs})
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    made_policy = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
        made_policy = True
    try:
        logger.warning("Installing Debian packages for the container tests: %s", packages)
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        ):
            done = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_SECONDS
            )
            if done.returncode != 0:
                return f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout)[-1500:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"installing {packages} failed: {exc}"
    finally:
        if made_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    return None


def ensure_installed(needs: tuple[Need, ...]) -> list[Need]:
    """Returns the needs still missing after installing what can be installed here."""
    absent = missing(needs)
    if absent and can_install():
        error = install(absent)
        if error:
            logger.warning("%s", error)
        absent = missing(needs)
    return absent
