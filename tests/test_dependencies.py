"""Every package loaxa declares is used: a declared one that nothing imports is weight on
every unit (and a supply-chain risk) for nothing (docs/design.md, issue 11: pydub)."""

import ast
import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("loaxa", "device", "scheduler", "audio", "provisioning", "hw", "fleet", "updater")
# Used without an import of their own: a driver another package loads by name.
LOADED_BY_ANOTHER = {
    "lgpio": "gpiozero's pin driver on a Raspberry Pi (gpiozero imports it)",
    "psycopg": "SQLAlchemy's PostgreSQL driver (postgresql+psycopg:// URLs)",
}


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"]) + list(project["optional-dependencies"]["fleet"])
    return {canonical(req.name): req for req in map(Requirement, requirements)}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> set[str]:
    """The top-level names the project's own modules import."""
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def test_every_declared_package_is_imported_or_loaded_by_another():
    by_module = importlib.metadata.packages_distributions()
    used = {canonical(dist) for module in imported_modules() for dist in by_module.get(module, [])}
    unused = sorted(set(declared()) - used - set(LOADED_BY_ANOTHER))
    assert unused == [], f"declared but never imported: {unused}"


def test_what_the_project_keeps_is_what_docs_design_explains():
    """APScheduler stays for its trigger API; pydub is gone (docs/design.md says why)."""
    assert "apscheduler" in declared() and "pydub" not in declared()
    assert "apscheduler" in imported_modules()
