"""`make offline-kit`: the instructor's folder for USB sticks, so that a room without Wi-Fi can install.

    python -m workshop offline-kit --out offline-kit [--python 3.11,3.12] [--platform linux-x86_64,...]

It writes:
  wheels/   every wheel the workshop's dependencies (and the `dev` extra, setuptools, wheel, pip) need, for
            each Python version x platform of the matrix; one shared folder, so pure-Python wheels are
            stored once. An attendee installs with `pip install --no-index --find-links KIT/wheels ...`.
  images/   `docker save` of the workshop's images that exist on this machine (never pulled).
  slides/   a copy of slides/dist/ when `make slides` has built it.
  README.txt, MANIFEST   what is in it and how to use it; per Python/platform, which packages were found.

Settings: KIT_PYTHONS="3.11 3.12" and KIT_PLATFORMS="linux-x86_64 ..." (or "current"), or the flags.
Running it again on the same folder only downloads what is not there yet.
"""
from __future__ import annotations

import argparse
import email.parser
import os
import platform as platform_mod
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging import tags as tags_mod
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent


def _manylinux(arch: str) -> list[str]:
    # pip matches --platform tags exactly (it widens macOS versions itself, not manylinux_2_x), so we name
    # every glibc baseline from the oldest wheels up to 2.28 (Debian 10, Ubuntu 20.04, RHEL 8 and newer
    # laptops run them); a wheel that needs a newer glibc than 2.28 is left out on purpose.
    legacy = ["manylinux1", "manylinux2010", "manylinux2014"] if arch == "x86_64" else ["manylinux2014"]
    first = 5 if arch == "x86_64" else 17
    return [f"{p}_{arch}" for p in legacy] + [f"manylinux_2_{m}_{arch}" for m in range(first, 29)]


def _macos(arch: str) -> list[str]:
    # macOS 10.9 to 14.0, the machine's own architecture and universal2 (one wheel for both; those often
    # say 10_9 even for Apple silicon, whose own arm64 wheels start at 11.0).
    versions = [(10, m) for m in range(9, 16)] + [(major, 0) for major in range(11, 15)]
    return [f"macosx_{a}_{b}_{kind}" for a, b in versions for kind in (arch, "universal2")
            if not (kind == "arm64" and (a, b) < (11, 0))]


@dataclass(frozen=True)
class Platform:
    name: str
    tags: tuple[str, ...]
    markers: dict = field(hash=False)  # what pip's environment markers would say on that machine


PLATFORMS = {p.name: p for p in (
    Platform("linux-x86_64", tuple(_manylinux("x86_64")),
             {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}),
    Platform("linux-aarch64", tuple(_manylinux("aarch64")),
             {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"}),
    Platform("macos-x86_64", tuple(_macos("x86_64")),
             {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64"}),
    Platform("macos-arm64", tuple(_macos("arm64")),
             {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"}),
)}
DEFAULT_PYTHONS = ("3.11", "3.12")


class KitError(Exception):
    """Bad settings or a kit that cannot be written: one sentence naming the fix."""


def current_platform() -> str:
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform_mod.machine().lower(), platform_mod.machine())
    name = {"linux": f"linux-{machine}", "darwin": "macos-" + ("arm64" if machine == "aarch64" else machine)
            }.get(sys.platform, "")
    if name not in PLATFORMS:
        raise KitError(f"this machine ({sys.platform} {platform_mod.machine()}) is none of the kit's platforms; "
                       f"name them in KIT_PLATFORMS ({', '.join(PLATFORMS)})")
    return name


def parse_matrix(pythons: str | None, platforms: str | None) -> tuple[list[str], list[Platform]]:
    """The Python versions and platforms from flags or KIT_PYTHONS / KIT_PLATFORMS (spaces or commas)."""
    py = (pythons or os.environ.get("KIT_PYTHONS") or " ".join(DEFAULT_PYTHONS)).replace(",", " ").split()
    for v in py:
        if not re.fullmatch(r"3\.\d{1,2}", v):
            raise KitError(f"KIT_PYTHONS (or --python): {v!r} is not a Python version; "
                           f"use e.g. KIT_PYTHONS=\"3.11 3.12\"")
    names = (platforms or os.environ.get("KIT_PLATFORMS") or " ".join(PLATFORMS)).replace(",", " ").split()
    names = [current_platform() if n == "current" else n for n in names]
    unknown = [n for n in names if n not in PLATFORMS]
    if unknown:
        raise KitError(f"KIT_PLATFORMS (or --platform): unknown platform {unknown[0]!r}; "
                       f"use some of {', '.join(PLATFORMS)} or current")
    return list(dict.fromkeys(py)), [PLATFORMS[n] for n in dict.fromkeys(names)]


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """What an attendee's `pip install -e '.[dev]'` needs, read from pyproject.toml (never retyped here):
    the dependencies, the dev extra, the build backend (an offline editable install builds with it), and
    wheel and pip (so the fresh venv can also upgrade pip from the kit)."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    return [*project["dependencies"], *project.get("optional-dependencies", {}).get("dev", []),
            *data["build-system"]["requires"], "wheel", "pip"]


# --- the wheelhouse -------------------------------------------------------------------------------


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check",
                           "--progress-bar", "off"], capture_output=True, text=True)


def _download(wheels: Path, python: str, plat: Platform, reqs: list[str]) -> subprocess.CompletedProcess:
    # --only-binary with --platform: pip may not run a foreign platform's sdist build. --find-links on the
    # wheelhouse itself: a wheel we built from an sdist (below) counts as found on the next round.
    return _pip("download", "--dest", str(wheels), "--find-links", str(wheels), "--only-binary=:all:",
                "--python-version", python, "--implementation", "cp",
                *[arg for tag in plat.tags for arg in ("--platform", tag)], *reqs)


def _pure_wheel_from_sdist(req: str, wheels: Path) -> bool:
    """A package that ships only an sdist: download it once and build a wheel here; keep the wheel only if
    it is pure Python (py3-none-any), which then installs on every platform of the matrix."""
    with tempfile.TemporaryDirectory() as tmp:
        got = _pip("download", "--no-deps", "--no-binary=:all:", "--dest", tmp, req)
        sdists = [p for p in Path(tmp).iterdir() if p.suffix in (".gz", ".zip")]
        if got.returncode or not sdists:
            return False
        built = _pip("wheel", "--no-deps", "--wheel-dir", tmp, str(sdists[0]))
        pure = [p for p in Path(tmp).glob("*.whl") if p.name.endswith("-none-any.whl")]
        if built.returncode or not pure:
            return False
        shutil.copy2(pure[0], wheels / pure[0].name)
        return True


def _supported(python: str, plat: Platform) -> set:
    version = tuple(int(x) for x in python.split("."))
    cp = f"cp{version[0]}{version[1]}"
    return {*tags_mod.cpython_tags(version, platforms=plat.tags),
            *tags_mod.compatible_tags(version, cp, platforms=plat.tags)}


def _best_wheels(wheels: Path, supported: set) -> dict[str, Path]:
    """name -> the newest wheel in the folder that installs on this Python/platform (what pip would take)."""
    best: dict[str, tuple] = {}
    for path in wheels.glob("*.whl"):
        name, version, _, wheel_tags = parse_wheel_filename(path.name)
        if wheel_tags & supported and (name not in best or version > best[name][0]):
            best[name] = (version, path)
    return {name: path for name, (_, path) in best.items()}


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return email.parser.Parser().parsestr(z.read(meta).decode()).get_all("Requires-Dist") or []


def closure(reqs: list[str], wheels: Path, python: str, plat: Platform) -> tuple[dict[str, Path], list[str]]:
    """Walk the requirements through the wheels' own metadata, with *the target's* environment markers.

    pip evaluates markers on the machine that runs it, so a download for macOS from Linux skips e.g.
    ipykernel's `appnope; platform_system == "Darwin"`, and one for 3.12 from 3.11 skips a
    `python_version >= "3.12"` dependency. Returns (name -> wheel used, requirements with no wheel)."""
    env = {**plat.markers, "python_version": python, "python_full_version": f"{python}.0", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    best = _best_wheels(wheels, _supported(python, plat))
    used: dict[str, Path] = {}
    extras_seen: dict[str, set] = {}
    missing: list[str] = []
    queue = [(Requirement(r), {""}) for r in reqs]
    while queue:
        req, parent_extras = queue.pop()
        if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in parent_extras):
            continue
        name = canonicalize_name(req.name)
        wanted = {""} | set(req.extras)
        if name in used and wanted <= extras_seen[name]:
            continue
        if name not in best:
            if any(canonicalize_name(Requirement(m).name) == name for m in missing):
                continue  # one line per package, not per package that asks for it
            # Without its marker: pip would evaluate it on this machine again and skip it.
            missing.append(f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}"
                           f"{req.specifier}")
            continue
        used[name] = best[name]
        extras_seen[name] = extras_seen.get(name, {""}) | wanted
        queue += [(Requirement(r), extras_seen[name]) for r in _requires(best[name])]
    return used, missing


@dataclass
class Combination:
    python: str
    platform: Platform
    used: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)
    built: list = field(default_factory=list)  # requirements we built a pure wheel for

    @property
    def label(self) -> str:
        return f"Python {self.python} {self.platform.name}"

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.used.values())


def fill_wheels(wheels: Path, reqs: list[str], python: str, plat: Platform) -> Combination:
    """Download until every requirement, under the target's markers, has a wheel; or say what has none."""
    combo, wanted = Combination(python, plat), list(reqs)
    for _ in range(10):  # each round fixes one missing package (an sdist built, a marker pip skipped)
        got = _download(wheels, python, plat, wanted)
        if got.returncode:
            absent = re.search(r"No matching distribution found for (\S+)", got.stderr)
            if absent and _pure_wheel_from_sdist(absent.group(1), wheels):
                combo.built.append(absent.group(1))
                continue
            # pip saves nothing when the resolution fails: the MANIFEST lists what this combination got
            # from the others' downloads, and the one package pip could not find.
            combo.used, _ = closure(reqs, wheels, python, plat)
            combo.missing = [absent.group(1) if absent else got.stderr.strip().splitlines()[-1]]
            return combo
        combo.used, combo.missing = closure(reqs, wheels, python, plat)
        extra = [m for m in combo.missing if m not in wanted]
        if not extra:
            return combo
        wanted += extra  # what pip skipped for the host's markers: ask for it by name
    return combo


# --- images, slides, README, MANIFEST -----------------------------------------------------------------


def image_names() -> list[str]:
    """The workshop's images: Redis (REDIS_IMAGE; CI's local build, or compose's default redis:7-alpine),
    the compose stack's Python image and the bases it is built from (see docker-compose.yml, .ci/*.sh)."""
    names = [os.environ.get("REDIS_IMAGE", "workshop-redis:local"), "workshop-redis:local", "redis:7-alpine",
             "workshop-python:local", os.environ.get("PYTHON_IMAGE", "python:3.11-slim"),
             "workshop-python-base:local"]
    return list(dict.fromkeys(names))


def save_images(out: Path) -> list[str]:
    """`docker save` the images this machine has. Never pulls, never starts or stops the daemon."""
    kept = sorted(p.name for p in (out / "images").glob("*.tar")) if (out / "images").is_dir() else []
    kept_note = f"; kept those saved before: {', '.join(kept)}" if kept else ""
    try:
        if subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode:
            return [f"images skipped: Docker isn't running (docker info fails){kept_note}"]
    except (OSError, subprocess.TimeoutExpired):
        return [f"images skipped: Docker isn't running (no docker command, or it does not answer){kept_note}"]
    (out / "images").mkdir(exist_ok=True)
    notes = []
    for name in image_names():
        if subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode:
            notes.append(f"image {name}: not on this machine, skipped")
            continue
        tar = out / "images" / (re.sub(r"[^A-Za-z0-9.-]+", "_", name) + ".tar")
        saved = subprocess.run(["docker", "save", "-o", str(tar), name], capture_output=True, text=True)
        if not saved.returncode:
            tar.chmod(0o644)  # docker save writes 0600; the stick's next owner must be able to read it
        notes.append(f"image {name}: saved" if not saved.returncode else
                     f"image {name}: docker save failed: {saved.stderr.strip()}")
    return notes


def copy_slides(out: Path) -> str:
    dist = ROOT / "slides" / "dist"
    if not dist.is_dir():
        return "slides skipped: run make slides first to include them"
    shutil.copytree(dist, out / "slides", dirs_exist_ok=True)
    return "slides: copied from slides/dist/"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


README = """\
The workshop's offline kit (built {date} by `make offline-kit`)
=====================================================

For a room without Wi-Fi: everything `make demo` / `make test` would download.

  wheels/    the Python packages, for:
             {matrix}
  images/    Docker images (`docker save`), if the instructor's machine had them
  slides/    the slides (open slides/workshop.html in a browser), if they were built
  MANIFEST   every file with its size, and per Python/platform which packages it has

The attendee, in the workshop's checkout (git clone, or the zip), with this folder copied to the laptop:

    WORKSHOP_OFFLINE_KIT=/path/to/kit make demo

That creates .venv from the kit only (pip --no-index --find-links /path/to/kit/wheels), no network;
`make test` and `make lab` then work the same. If the laptop's python3 is a version the kit has no
wheels for, name one it has: `WORKSHOP_OFFLINE_KIT=/path/to/kit make demo PYTHON=python3.12`.
Without make:

    python3 -m venv .venv
    .venv/bin/pip install --no-index --find-links /path/to/kit/wheels --upgrade pip
    .venv/bin/pip install --no-index --find-links /path/to/kit/wheels -e '.[dev]'

Docker images (only for chapter 6's compose stack, optional):
    for f in /path/to/kit/images/*.tar; do docker load -i "$f"; done
"""


def write_docs(out: Path, combos: list[Combination], notes: list[str]) -> None:
    matrix = "\n             ".join(", ".join(c.label for c in combos if c.python == py)
                                   for py in dict.fromkeys(c.python for c in combos))
    (out / "README.txt").write_text(README.format(date=time.strftime("%Y-%m-%d"), matrix=matrix))
    lines = ["# files (bytes, path)"]
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "MANIFEST"):
        lines.append(f"{path.stat().st_size:>12}  {path.relative_to(out)}")
    for c in combos:
        status = "complete" if not c.missing else f"INCOMPLETE, no wheel for: {', '.join(c.missing)}"
        lines += ["", f"# {c.label}: {len(c.used)} packages, {_mb(c.size)}, {status}"]
        lines += [f"{name} {path.name}" for name, path in sorted(c.used.items())]
    lines += ["", "# notes"] + notes
    (out / "MANIFEST").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop offline-kit", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="offline-kit", help="the kit's folder (default offline-kit/)")
    parser.add_argument("--python", help='Python versions, e.g. "3.11,3.12" (default KIT_PYTHONS, else both)')
    parser.add_argument("--platform", help="platforms, of " + ", ".join(PLATFORMS) + " or current "
                                           "(default KIT_PLATFORMS, else all four)")
    parser.add_argument("--no-images", action="store_true", help="leave the Docker images out")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a Python/platform lacks a wheel (default: report it, carry on)")
    args = parser.parse_args(argv)
    try:
        pythons, platforms = parse_matrix(args.python, args.platform)
    except KitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    started, reqs = time.monotonic(), requirements()
    combos = []
    for python in pythons:
        for plat in platforms:
            t0 = time.monotonic()
            combo = fill_wheels(wheels, reqs, python, plat)
            combos.append(combo)
            built = f", built from sdist: {', '.join(combo.built)}" if combo.built else ""
            state = "ok" if not combo.missing else f"MISSING {', '.join(combo.missing)} (no wheel)"
            print(f"wheels {combo.label}: {len(combo.used)} packages, {_mb(combo.size)}, {state}{built} "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)
    notes = [] if args.no_images else save_images(out)
    notes.append(copy_slides(out))
    notes += [f"{c.label}: no wheel for {', '.join(c.missing)}" for c in combos if c.missing]
    write_docs(out, combos, notes)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    images = sum(p.stat().st_size for p in (out / "images").glob("*.tar")) if (out / "images").is_dir() else 0
    wheel_total = sum(p.stat().st_size for p in wheels.glob("*"))
    for note in notes:
        print(note)
    print(f"kit {out}: {_mb(total)} (wheels {_mb(wheel_total)}, {len(list(wheels.glob('*.whl')))} files; "
          f"images {_mb(images)}) in {time.monotonic() - started:.0f} s; see {out / 'README.txt'}")
    return 1 if args.strict and any(c.missing for c in combos) else 0
