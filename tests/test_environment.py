"""The environment definitions agree: requirements.lock (what `make setup` installs), environment.yml (the conda
equivalent), pyproject.toml and requirements.in (the loose needs). Also: no registry host name in the checkout."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK = REPO_ROOT / "requirements.lock"
ENVIRONMENT = REPO_ROOT / "environment.yml"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.strip().startswith("#")]


def _pins(entries: list[str], source: str) -> dict[str, str]:
    """name (canonical) -> version of ``name==version`` lines; anything else (options, index URLs, ranges) fails."""
    pins: dict[str, str] = {}
    bad = [e for e in entries if not PIN.match(e)]
    assert not bad, f"{source}: entries that are not exact `name==version` pins: {bad}"
    for entry in entries:
        name, version = PIN.match(entry).groups()
        key = canonicalize_name(name)
        assert key not in pins, f"{source}: {name} is pinned twice"
        pins[key] = version
    return pins


def _lock_pins() -> dict[str, str]:
    return _pins(_lines(LOCK), LOCK.name)


def _environment_pip_entries() -> list[str]:
    env = yaml.safe_load(ENVIRONMENT.read_text(encoding="utf-8"))
    deps = env.get("dependencies", [])
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, f"{ENVIRONMENT.name}: expected one `pip:` section, found {len(pip_sections)}"
    conda = [d for d in deps if isinstance(d, str)]
    assert any(d.replace(" ", "").startswith("python=3.11") for d in conda), f"{ENVIRONMENT.name}: no python=3.11"
    assert "pip" in conda, f"{ENVIRONMENT.name}: pip is not among the conda dependencies"
    return [str(e).strip() for e in pip_sections[0]]


def test_environment_yml_pins_equal_lock() -> None:
    env_entries = _environment_pip_entries()
    env, lock = set(env_entries), set(_lines(LOCK))
    _pins(env_entries, ENVIRONMENT.name)
    assert not lock - env, f"pinned in requirements.lock but not in environment.yml: {sorted(lock - env)}"
    assert not env - lock, f"pinned in environment.yml but not in requirements.lock: {sorted(env - lock)}"


def test_no_index_urls() -> None:
    for path in (LOCK, ENVIRONMENT):
        text = path.read_text(encoding="utf-8")
        for marker in ("--index-url", "--extra-index-url", "--find-links", "--trusted-host", "-i ", "://"):
            assert marker not in text, f"{path.name}: contains {marker!r}; pins only, no index or URL"


def _declared_requirements() -> list[tuple[str, Requirement]]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [("pyproject.toml [project.dependencies]", Requirement(r)) for r in project.get("dependencies", [])]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        declared += [(f"pyproject.toml [{extra}]", Requirement(r)) for r in reqs]
    declared += [("requirements.in", Requirement(r)) for r in _lines(REPO_ROOT / "requirements.in")]
    return declared


def test_declared_dependencies_are_pinned_in_lock() -> None:
    """Every dependency of pyproject.toml (extras included) and requirements.in is pinned in the lock, at a version
    that satisfies its declared range."""
    lock = _lock_pins()
    declared = _declared_requirements()
    assert declared, "pyproject.toml declares no dependency"
    problems = []
    for source, req in declared:
        version = lock.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{source}: {req} is not pinned in requirements.lock")
        elif not req.specifier.contains(Version(version), prereleases=True):
            problems.append(f"{source}: {req} but requirements.lock pins {req.name}=={version}")
    assert not problems, "\n".join(problems)


def test_no_registry_host_names_in_checkout() -> None:
    """No file of the checkout names a package registry host (the lock installs through the default index)."""
    # assembled from pieces so that this file does not name the hosts itself
    hosts = ["pypi" + ".org", "pypi" + ".python" + ".org", "python" + "hosted" + ".org"]
    skip_dirs = {".git", ".venv", "_build", "data", "results", ".cache", "runs", "node_modules", "__pycache__"}
    offenders = []
    for path in REPO_ROOT.rglob("*"):
        rel = path.relative_to(REPO_ROOT)
        if not path.is_file() or rel.parts[0] in skip_dirs or any(p.endswith(".egg-info") or p.startswith(".pytest") for p in rel.parts):
            continue
        if path.stat().st_size > 5_000_000:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore").lower()
        offenders += [f"{rel}: {host}" for host in hosts if host in text]
    assert not offenders, "registry host names found:\n  " + "\n  ".join(offenders)
