"""What the deployment files promise: current locks, an image that caches its dependencies, and a
compose stack whose stores ask for credentials. `make compose-check` runs Docker Compose itself."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shared.tasks import CeleryTaskQueue

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])


def _locked(lock: str) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", (ROOT / lock).read_text(), flags=re.M)
    return {canonicalize_name(name): version for name, version in pins}


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """The project's requirements with these extras, following extras that name the project."""
    wanted = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in PYPROJECT["project"]["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == PROJECT:
                todo.extend(requirement.extras)
            else:
                wanted.append(requirement)
    return wanted


def _stale(lock: str, extras: tuple[str, ...]) -> list[str]:
    pins = _locked(lock)
    stale = []
    for requirement in _requirements(extras):
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None or not requirement.specifier.contains(pinned, prereleases=True):
            stale.append(f"{requirement} (locked: {pinned})")
    return stale


def test_the_locks_pin_every_requirement_of_pyproject_run_make_lock_when_this_fails() -> None:
    assert _stale("requirements.lock", ()) == []
    assert _stale("requirements-dev.lock", ("dev",)) == []


def test_the_image_lock_carries_no_test_double_or_test_tool() -> None:
    pins = _locked("requirements.lock")
    for name in ("mongomock-motor", "mongomock", "pytest", "mypy", "uv"):
        assert name not in pins
    assert "mongomock-motor" in _locked("requirements-dev.lock")


def test_the_image_installs_locked_dependencies_before_copying_the_code() -> None:
    steps = [
        line.split() for line in (ROOT / "Dockerfile").read_text().splitlines() if line and line[0] != "#"
    ]
    instructions = [" ".join(step) for step in steps]
    stages = [n for n, step in enumerate(steps) if step[0] == "FROM"]
    assert len(stages) == 2, "a build stage and a runtime stage"
    lock_install = instructions.index("RUN pip install --require-hashes --no-deps -r requirements.lock")
    first_code_copy = next(n for n, step in enumerate(steps) if step[:2] == ["COPY", "web"])
    assert instructions.index("COPY requirements.lock ./") < lock_install < first_code_copy < stages[1]
    runtime = instructions[stages[1] :]
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert not any(i.startswith("RUN pip") for i in runtime), "the runtime stage installs nothing"
    assert not any("[demo]" in i or "mongomock" in i for i in instructions)


def test_compose_builds_the_store_urls_from_credentials_it_requires() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    mongo_env = services["mongo"]["environment"]
    assert mongo_env["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGO_INITDB_ROOT_PASSWORD:?")
    assert mongo_env["MONGO_INITDB_ROOT_USERNAME"].startswith("${MONGO_INITDB_ROOT_USERNAME")
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    for role in ("web", "worker", "beat"):
        env = services[role]["environment"]
        assert env["MONGODB_URL"].startswith(
            "mongodb://${MONGO_INITDB_ROOT_USERNAME:-analytics}:${MONGO_INITDB_ROOT_PASSWORD:?"
        )
        assert env["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")


def test_compose_workers_consume_every_queue_and_flower_is_an_optional_profile() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "worker", "worker"]
    assert "-Q" not in services["worker"]["command"]
    assert services["flower"]["profiles"] == ["flower"]
    assert services["flower"]["environment"]["CELERY_BROKER_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    assert all("profiles" not in services[name] for name in ("mongo", "redis", "web", "worker", "beat"))


def test_the_web_sends_tasks_without_a_result_backend() -> None:
    queue = CeleryTaskQueue("redis://127.0.0.1:1/0")
    assert queue._celery.conf.result_backend is None
