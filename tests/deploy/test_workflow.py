""".github/workflows/ci.yml: valid YAML, valid against the GitHub workflow schema (vendored in
check-jsonschema), and it runs the jobs the project relies on."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from tests.support.deploy import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    WORKFLOW,
    interpolate,
    load_yaml,
    read_env_example,
    schema,
    schema_errors,
)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load_yaml(WORKFLOW)


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job["steps"]


def runs(job: dict[str, Any]) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(job) if s.get("uses", "").split("@")[0] == action]


def test_matches_the_github_workflow_schema(workflow: dict[str, Any]) -> None:
    assert schema_errors(workflow, schema("github-workflows")) == []


def test_schema_check_can_fail(workflow: dict[str, Any]) -> None:
    broken = {**workflow, "jobs": {**workflow["jobs"], "lint": {**workflow["jobs"]["lint"]}}}
    del broken["jobs"]["lint"]["runs-on"]
    broken["jobs"]["lint"]["timeout-minutes"] = "soon"
    assert schema_errors(broken, schema("github-workflows")) != []


def test_triggers(workflow: dict[str, Any]) -> None:
    # YAML 1.2: `on` is a key, not the boolean true it becomes under YAML 1.1 loaders.
    assert {"push", "pull_request"} <= set(workflow["on"])
    assert workflow["permissions"] == {"contents": "read"}


def test_expected_jobs(workflow: dict[str, Any]) -> None:
    assert set(workflow["jobs"]) == {"lint", "test", "pipeline", "docker", "compose"}
    for name, job in workflow["jobs"].items():
        assert job["runs-on"].startswith("ubuntu-"), name
        assert 0 < job["timeout-minutes"] <= 60, name


def test_lint_runs_ruff_mypy_and_the_import_contracts(workflow: dict[str, Any]) -> None:
    script = runs(workflow["jobs"]["lint"])
    for command in (
        "ruff check",
        "ruff format --check",
        "mypy",
        "lint-imports",
        "python -m stack.config_doc --check",
    ):
        assert command in script


def test_tests_run_unit_and_integration_but_leave_the_pipeline_to_its_job(workflow: dict[str, Any]) -> None:
    test, pipeline = workflow["jobs"]["test"], workflow["jobs"]["pipeline"]
    (pytest_line,) = [line for line in runs(test).splitlines() if line.startswith("pytest")]
    assert "--ignore=tests/training" in pytest_line
    assert " -m " not in pytest_line  # integration tests included: the broker is testcontainers Kafka
    assert "redis" in test["services"]
    assert test["services"]["redis"]["ports"] == ["6379:6379"]
    # The suite would start its own redis-server; on GitHub it uses the service container.
    assert test["env"]["PAWSTREAM_TEST_REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert re.search(r"^pytest\b.*\btests/training\b", runs(pipeline), re.M)


def test_python_jobs_install_cpu_torch_pinned_like_pyproject_with_pip_cache(workflow: dict[str, Any]) -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    pinned = {d.split("==")[0]: d for d in deps if d.startswith(("torch==", "torchvision=="))}
    assert workflow["env"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    for name in ("lint", "test", "pipeline"):
        job = workflow["jobs"][name]
        (setup,) = uses(job, "actions/setup-python")
        assert setup["with"]["cache"] == "pip", name
        assert setup["with"]["cache-dependency-path"] == "pyproject.toml", name
        script = runs(job)
        assert f'--index-url "$TORCH_INDEX_URL" {pinned["torch"]} {pinned["torchvision"]}' in script, name
        assert "pip install -e '.[dev]'" in script, name


def test_docker_job_builds_with_layer_cache(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["docker"]
    assert uses(job, "docker/setup-buildx-action")
    builds = uses(job, "docker/build-push-action")
    contexts = {b["with"]["context"] for b in builds}
    assert contexts == {".", "compose/mlflow"}
    for build in builds:
        assert build["with"]["push"] is False
        assert build["with"]["cache-from"].startswith("type=gha")
        assert build["with"]["cache-to"].startswith("type=gha") and "mode=max" in build["with"]["cache-to"]
    app = next(b for b in builds if b["with"]["context"] == ".")
    assert app["with"]["file"] == "Dockerfile"
    assert app["with"]["load"] is True
    assert "docker run --rm pawstream:ci pawstream --help" in runs(job)


def test_compose_job_validates_and_starts_kafka(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["compose"]
    assert job["env"]["COMPOSE"] == "docker compose -f compose/compose.yml --env-file compose/.env.example"
    script = runs(job)
    assert "$COMPOSE config --quiet" in script
    assert "promtool" in script
    assert "$COMPOSE run --rm kafka-init" in script
    assert any(s.get("if") == "always()" and "down" in s.get("run", "") for s in steps(job))


def _step_index(job: dict[str, Any], text: str) -> int:
    (index,) = [i for i, step in enumerate(steps(job)) if text in step.get("run", "")]
    return index


def test_compose_job_runs_the_smoke_test_against_the_whole_stack(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["compose"]
    (up,) = [
        i
        for i, step in enumerate(steps(job))
        if re.search(r"\$COMPOSE up\b[^\n]*\\\n\s*worker", step.get("run", ""))
    ]
    up_command = " ".join(steps(job)[up]["run"].split())
    assert "--wait" in up_command
    for service in ("worker", "api", "monitor", "prometheus", "alertmanager"):
        assert re.search(rf"\b{service}\b", up_command), service
    # A model first: the registry's champion that the services load at start.
    assert _step_index(job, "python -m training.smoke_model") < up
    smoke = _step_index(job, "pawstream smoke")
    assert smoke > up
    smoke_command = " ".join(steps(job)[smoke]["run"].split())
    assert "--api http://127.0.0.1:8000" in smoke_command
    # Every service's metrics, from inside the network (worker and monitor are not published).
    for url in ("http://worker:9101/metrics", "http://monitor:9102/metrics", "http://127.0.0.1:8000/metrics"):
        assert f"--metrics {url}" in smoke_command
    logs = [s for s in steps(job) if s.get("if") == "failure()" and "$COMPOSE logs" in s.get("run", "")]
    assert logs, "print the stack's logs when a step fails"
    teardown = [s for s in steps(job) if s.get("if") == "always()" and "$COMPOSE down" in s.get("run", "")]
    assert teardown and steps(job).index(teardown[0]) == len(steps(job)) - 1
    assert "amtool" in runs(job) and "check-config" in runs(job)


def test_compose_job_builds_the_images_compose_runs(workflow: dict[str, Any]) -> None:
    compose = interpolate(load_yaml(COMPOSE_FILE), read_env_example(ENV_EXAMPLE).active)
    job = workflow["jobs"]["compose"]
    tags = {b["with"]["tags"]: b["with"]["context"] for b in uses(job, "docker/build-push-action")}
    assert tags[compose["services"]["api"]["image"]] == "."
    assert tags[compose["services"]["mlflow"]["image"]] == "compose/mlflow"
    for build in uses(job, "docker/build-push-action"):
        assert build["with"]["load"] is True


# Current majors, checked when this file last changed (see the commit that set them).
CURRENT_MAJORS = {
    "actions/checkout": 7,
    "actions/setup-python": 7,
    "actions/upload-artifact": 7,
    "docker/setup-buildx-action": 4,
    "docker/build-push-action": 7,
}


def test_actions_are_at_their_current_major(workflow: dict[str, Any]) -> None:
    seen = set()
    for name, job in workflow["jobs"].items():
        for step in steps(job):
            if "uses" in step:
                action, _, version = step["uses"].partition("@")
                assert int(version.removeprefix("v")) >= CURRENT_MAJORS[action], f"{name}: {step['uses']}"
                seen.add(action)
    assert seen == set(CURRENT_MAJORS)


def test_actions_are_pinned_to_a_version(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        for step in steps(job):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), f"{name}: {step['uses']}"
