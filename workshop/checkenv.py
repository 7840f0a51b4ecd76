"""`make check-env`: one OK or FAIL line per prerequisite, and what to do about a FAIL."""
from __future__ import annotations

import shutil
import sys
from importlib import metadata

from . import settings as settings_mod
from .redis_provider import docker_answers, ping

PACKAGES = {"celery": "5.7", "redis": "8.", "requests": "", "testcontainers": "4.15", "tqdm": "",
            "matplotlib": "", "jupyterlab": "", "nbclient": "", "pytest": ""}


def checks(settings: settings_mod.Settings) -> list[tuple[bool, str, str]]:
    """(ok, what, fix-or-detail) for each prerequisite."""
    found = []
    version = ".".join(map(str, sys.version_info[:3]))
    found.append((sys.version_info >= (3, 11), f"Python {version}", "install Python 3.11 or newer"))
    docker = docker_answers()
    found.append((docker, "Docker daemon answers",
                  "start Docker, or use REDIS_URL / redis-server (see README, Troubleshooting)"))
    server = shutil.which("redis-server")
    if settings.redis_url:
        redis_ok, how = ping(settings.redis_url), f"REDIS_URL={settings.redis_url}"
    else:
        redis_ok, how = docker or bool(server), (
            f"testcontainers ({settings.redis_image})" if docker else f"redis-server at {server}")
    found.append((redis_ok, f"Redis reachable via {how}" if redis_ok else "Redis reachable",
                  "set REDIS_URL to a running Redis, start Docker, or install redis-server"))
    for name, wanted in PACKAGES.items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            found.append((False, f"package {name}", "run `make venv` (installs everything into .venv)"))
            continue
        found.append((have.startswith(wanted), f"package {name} {have}",
                      f"expected {wanted}*; run `make venv` again"))
    return found


def main(argv: list[str] | None = None) -> int:
    results = checks(settings_mod.load())
    for ok, what, fix in results:
        print(f"{'OK  ' if ok else 'FAIL'}  {what}" + ("" if ok else f"  -> {fix}"))
    # Docker alone may be missing: Redis can come from elsewhere.
    blocking = [what for ok, what, _ in results if not ok and not what.startswith("Docker")]
    print("ready" if not blocking else f"not ready: {len(blocking)} problem(s) above")
    return 0 if not blocking else 1
