"""`loaxa release build`: the wheel bundle for one architecture, and its release document.

A bundle is an uncompressed tar of wheels for Python 3.11 (`wheels/<name>.whl`): loaxa's
own wheel plus the wheels of its dependencies for the target architecture. How each part
is got, so that a build works offline:
- loaxa's wheel: given (`--wheel`), or built from a source tree (`--source`) with
  `pip wheel --no-deps`; without build isolation when setuptools can build wheels here
  (the `wheel` package, or setuptools >= 70.1), so no index is needed; else with it.
- dependencies: every `.whl` of a wheelhouse (`--wheels DIR`), made on a machine with
  internet for the target architecture (`scripts/bundle-offline.sh --arch aarch64` writes
  one; `pip download --only-binary=:all: --platform manylinux2014_aarch64
  --python-version 3.11 -d DIR loaxa` too); or (`--from-installed`, this machine's
  architecture only: tests, a build on a Pi) the distributions loaxa needs as installed
  in the running environment, repacked into wheels from their RECORD (an installed
  package keeps no wheel; its dist-info keeps the files, the WHEEL tags and the
  metadata, which is all a wheel is). A dependency loaxa needs on every platform and
  missing from the bundle is named in a warning: the unit's `pip install --no-index`
  would fail and the update would be refused there (the running version stays).
Tests build x86_64 bundles with a tiny wheelhouse; aarch64 bundles for Pis belong to a
release step, never to `make test`.
"""

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from loaxa.errors import LoaxaError

WHEEL_NAME = re.compile(r"(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)-.+\.whl$")


class BuildError(LoaxaError):
    """The bundle cannot be built; the message says why."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _can_build_without_isolation() -> bool:
    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        import setuptools
        major, minor = (int(p) for p in setuptools.__version__.split(".")[:2])
        return (major, minor) >= (70, 1)
    except (ImportError, ValueError):
        return False


def build_wheel(source: Path, into: Path) -> Path:
    """loaxa's wheel from a source tree (`pip wheel --no-deps`)."""
    if not (source / "pyproject.toml").exists():
        raise BuildError(f"{source}: no pyproject.toml here; give the loaxa source tree, or --wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
           "--wheel-dir", str(into), str(source)]
    if _can_build_without_isolation():
        cmd[4:4] = ["--no-build-isolation", "--no-index"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise BuildError(f"building loaxa's wheel failed: {lines[-1] if lines else 'no output'}")
    wheels = sorted(into.glob("loaxa-*.whl"))
    if not wheels:
        raise BuildError("building loaxa's wheel left no loaxa-*.whl")
    return wheels[-1]


def wheel_version(wheel: Path) -> str:
    match = WHEEL_NAME.match(wheel.name)
    if match is None or canonical(match["name"]) != "loaxa":
        raise BuildError(f"{wheel.name}: not a loaxa wheel (expected loaxa-VERSION-...whl)")
    return match["version"]


def unconditional_requirements(wheel: Path) -> list[str]:
    """The names loaxa's wheel requires on every platform (no environment marker)."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next((n for n in archive.namelist() if n.endswith(".dist-info/METADATA")), None)
        text = archive.read(metadata).decode("utf-8", "replace") if metadata else ""
    names = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:") and ";" not in line:
            names.append(canonical(re.split(r"[\s<>=!~\[(;]", line.split(":", 1)[1].strip(), maxsplit=1)[0]))
    return names


def _requirement_name(text: str) -> str:
    return canonical(re.split(r"[\s<>=!~\[(;]", text.strip(), maxsplit=1)[0])


def installed_closure(root: str = "loaxa") -> list:
    """The installed distributions `root` needs at run time (not itself; extras left out).

    A requirement with an environment marker counts when it is installed here (lgpio on a
    Pi); one without a marker that is not installed is a BuildError naming it."""
    seen: dict[str, object] = {}
    queue = [(canonical(root), None)]
    while queue:
        name, marker = queue.pop()
        if name in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            if marker is None:
                raise BuildError(f"{name}: needed by loaxa and not installed here; give --wheels DIR") from None
            continue
        seen[name] = dist
        for requirement in dist.requires or ():
            spec, _, condition = requirement.partition(";")
            if "extra" in condition:
                continue
            queue.append((_requirement_name(spec), condition.strip() or None))
    seen.pop(canonical(root), None)
    return sorted(seen.values(), key=lambda d: canonical(d.metadata["Name"]))


def repack_installed(dist, into: Path) -> Path:
    """An installed distribution as a wheel again: its files under site-packages (no
    bytecode; console scripts are made again by pip from entry_points.txt) and its
    dist-info with a new RECORD, stored (not deflated: the bundle is tarred as is)."""
    import base64
    wheel_text = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")]
    files = [f for f in dist.files or () if not str(f).startswith("..")]
    info = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info")), None)
    if not tags or info is None:
        raise BuildError(f"{dist.metadata['Name']}: its installed metadata has no WHEEL tags; give --wheels DIR")
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    parts = [tag.split("-") for tag in tags]  # every tag kept: `py2.py3-none-any`, two manylinux levels
    tag = "-".join(".".join(dict.fromkeys(p[i] for p in parts)) for i in range(3))
    path = into / f"{name}-{dist.version}-{tag}.whl"
    skipped = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as wheel:
        for entry in files:
            if "__pycache__" in entry.parts or entry.suffix == ".pyc":
                continue
            if entry.parts[0] == info and entry.name in skipped:
                continue
            source = Path(dist.locate_file(entry))
            if not source.is_file():
                continue
            data = source.read_bytes()
            wheel.writestr(entry.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{entry.as_posix()},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def repack_dependencies(into: Path) -> list[Path]:
    into.mkdir(parents=True, exist_ok=True)
    return [repack_installed(dist, into) for dist in installed_closure()]


def write_bundle(loaxa_wheel: Path, dependency_wheels, out: Path, arch: str) -> tuple[Path, str, list[str]]:
    """`out/loaxa-<version>-<arch>.tar`; returns (path, version, missing dependency names)."""
    version = wheel_version(loaxa_wheel)
    wheels = [Path(loaxa_wheel)] + [Path(w) for w in dependency_wheels if WHEEL_NAME.match(Path(w).name)
                                    and canonical(WHEEL_NAME.match(Path(w).name)["name"]) != "loaxa"]
    present = {canonical(WHEEL_NAME.match(w.name)["name"]) for w in wheels}
    missing = [name for name in unconditional_requirements(loaxa_wheel) if name not in present]
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"loaxa-{version}-{arch}.tar"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=out)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for wheel in sorted(wheels, key=lambda w: w.name):
                info = tar.gettarinfo(str(wheel), arcname=f"wheels/{wheel.name}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0  # the same wheels make the same bundle
                with open(wheel, "rb") as f:
                    tar.addfile(info, f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target, version, missing


def bundle_version(bundle: Path) -> str:
    """The loaxa version a bundle carries (its loaxa wheel's name)."""
    try:
        with tarfile.open(bundle) as tar:
            names = [Path(m.name).name for m in tar if m.isfile()]
    except (OSError, tarfile.TarError) as exc:
        raise BuildError(f"{bundle}: not a bundle from `loaxa release build`: {exc}") from exc
    for name in names:
        match = WHEEL_NAME.match(name)
        if match and canonical(match["name"]) == "loaxa":
            return match["version"]
    raise BuildError(f"{bundle}: holds no loaxa wheel")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def loaxa_wheel_for(source: Path | None, wheel: Path | None, workdir: Path) -> Path:
    if wheel is not None:
        if not wheel.is_file():
            raise BuildError(f"{wheel}: no such wheel")
        return wheel
    built = workdir / "built"
    built.mkdir()
    return build_wheel(source, built)


def copy_into(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if path.resolve() != target.resolve():
        shutil.copyfile(path, target)
    return target
