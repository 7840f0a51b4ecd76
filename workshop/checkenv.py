"""`make check-env`: one OK, FAIL or SKIP line per prerequisite, and what to do about a FAIL.

SKIP: an optional part that is missing, with what does its job instead (Docker,
when Redis comes from REDIS_URL or redis-server). Only a FAIL makes it "not ready".
Docker's line is what the tests will do: a container of REDIS_IMAGE started through testcontainers,
PINGed, removed. Nothing is pulled: a missing image is said so, by name.
"""
from __future__ import annotations

import shutil
import sys
from importlib import metadata

from . import settings as settings_mod
from .redis_provider import docker_answers, from_container, image_present, ping

PACKAGES = {"celery": "5.7", "redis": "8.", "requests": "", "testcontainers": "4.15", "tqdm": "",
            "matplotlib": "", "jupyterlab": "", "nbclient": "", "pytest": ""}


OK, FAIL, SKIP = "OK", "FAIL", "SKIP"


def redis_container(image: str) -> tuple[bool, str, str]:
    """(ok, what was checked, fix): start a container of `image` as the tests would, PING it, remove it."""
    if not image_present(image):
        return (False, f"Docker answers, but has no image {image}: no container started (nothing is pulled here)",
                f"`docker pull {image}` while online (the tests would pull it on first use), "
                f"or set REDIS_IMAGE to an image you have")
    try:
        with from_container(image) as provided:
            answered = ping(provided.url, timeout=5.0)
            url = provided.url
    except Exception as error:   # whatever Docker or testcontainers raised: say it, one line
        return (False, f"Docker answers, but a container of {image} did not start",
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}; "
                f"see TROUBLESHOOTING.md, Docker")
    if not answered:
        return (False, f"Docker answers, but a container of {image} did not answer PING at {url}",
                "see TROUBLESHOOTING.md, Docker (in a container: TESTCONTAINERS_CONNECTION_MODE=docker_host)")
    return (True, f"Docker ran {image}: a container answered PING at {url}, then was removed", "")


def checks(settings: settings_mod.Settings) -> list[tuple[bool, str, str]]:
    """(ok, what, fix-or-detail) for each prerequisite; Docker's line is the only optional one."""
    found = []
    version = ".".join(map(str, sys.version_info[:3]))
    found.append((sys.version_info >= (3, 11), f"Python {version}", "install Python 3.11 or newer"))
    docker = docker_answers()
    if docker:
        found.append(redis_container(settings.redis_image))
        docker = found[-1][0]
    else:
        found.append((False, "Docker daemon answers",
                      "start Docker, or use REDIS_URL / redis-server (see TROUBLESHOOTING.md)"))
    server = shutil.which("redis-server")
    if settings.redis_url:
        redis_ok, how = ping(settings.redis_url), f"REDIS_URL={settings.redis_url}"
    else:
        redis_ok, how = docker or bool(server), (
            f"testcontainers ({settings.redis_image})" if docker else f"redis-server at {server}")
    # Docker without the image and no redis-server: the tests would pull it, which this check does not try.
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


def verdicts(results: list[tuple[bool, str, str]]) -> list[tuple[str, str, str]]:
    """(OK | FAIL | SKIP, what, fix or what stands in): Docker missing is a SKIP while Redis comes from elsewhere."""
    redis_ok = any(ok for ok, what, _ in results if what.startswith("Redis reachable"))
    shown = []
    for ok, what, fix in results:
        if not ok and what.startswith("Docker") and redis_ok:
            shown.append((SKIP, what, "optional: Redis comes from elsewhere (line below); Docker is needed only "
                                      "for `make up` and the container tests"))
        else:
            shown.append((OK if ok else FAIL, what, fix))
    return shown


def main(argv: list[str] | None = None) -> int:
    shown = verdicts(checks(settings_mod.load()))
    for verdict, what, fix in shown:
        print(f"{verdict:<4}  {what}" + ("" if verdict == OK else f"  -> {fix}"))
    blocking = [what for verdict, what, _ in shown if verdict == FAIL]
    print("ready" if not blocking else f"not ready: {len(blocking)} problem(s) above")
    return 0 if not blocking else 1
