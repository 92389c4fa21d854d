"""Issue 14: what gets installed is pinned and hashed, and what gets deployed is pinned."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
AIOHTTP_FIXED = Version("3.13.3")  # the first release past the known aiohttp CVEs


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _locked(name: str) -> dict[str, tuple[Version, int]]:
    """{package: (version, number of hashes)} from a `scripts/lock` file."""
    text = (ROOT / name).read_text()
    pinned: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)", block)
        if head is None:
            continue
        pinned[canonicalize_name(head[1])] = (Version(head[2]), block.count("--hash=sha256:"))
    return pinned


def _requirements(group: str | None) -> list[Requirement]:
    project = _pyproject()["project"]
    raw = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(r) for r in raw]


@pytest.mark.parametrize(
    ("lock", "groups"),
    [("requirements.lock", [None]), ("requirements-test.lock", [None, "test"])],
)
def test_lock_files_pin_every_dependency_with_hashes(lock: str, groups: list[str | None]) -> None:
    pinned = _locked(lock)
    assert pinned, lock
    unhashed = [name for name, (_, hashes) in pinned.items() if hashes == 0]
    assert not unhashed, f"{lock}: no hash for {unhashed}"
    wanted = [r for g in groups for r in _requirements(g)]
    wanted += [Requirement(r) for r in _pyproject()["build-system"]["requires"]]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req} is not in {lock}: run scripts/lock"
        version, _ = pinned[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, outside pyproject's {req}: run scripts/lock"
        )


def test_aiohttp_is_past_the_known_cves() -> None:
    (aiohttp,) = [r for r in _requirements(None) if r.name == "aiohttp"]
    assert not aiohttp.specifier.contains(Version("3.13.2"))
    assert aiohttp.specifier.contains(AIOHTTP_FIXED)
    assert _locked("requirements.lock")["aiohttp"][0] >= AIOHTTP_FIXED
    assert Version(metadata.version("aiohttp")) >= AIOHTTP_FIXED  # what this run uses


def test_installs_go_through_the_hashed_locks() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert re.search(r"--require-hashes\s*\\?\s*-r requirements-test\.lock", bootstrap)
    assert re.search(r"--no-deps\s*\\?\s*--no-build-isolation -e \.", bootstrap)
    docker = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in docker
    assert "--no-deps --no-build-isolation ." in docker
    for base in re.findall(r"^FROM\s+(\S+)", docker, re.MULTILINE):
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_images_are_pinned_releases() -> None:
    services = _compose()["services"]
    for name in ("postgres", "rabbitmq"):
        image = services[name]["image"]
        assert re.fullmatch(r"[a-z]+:\d+\.\d+(\.\d+)?(-[a-z]+)?", image), image
    rabbit = Version(services["rabbitmq"]["image"].split(":")[1].split("-")[0])
    assert rabbit >= Version("4.0")  # 3.x is past its end of life
    assert services["postgres"]["image"].startswith("postgres:15.")


def test_compose_gives_keys_to_the_gateway_alone_and_serves_https() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        env = service.get("environment") or {}
        if name == "gateway":
            assert "QCARE_API_KEYS" in env
            assert env["QCARE_TLS_CERT"]
            assert env["QCARE_TLS_KEY"]
            assert "https://" in " ".join(service["healthcheck"]["test"])
        else:
            assert "QCARE_API_KEYS" not in env, f"{name} gets API keys it never uses"
