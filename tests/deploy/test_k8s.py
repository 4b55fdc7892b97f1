"""deploy/k8s: each overlay builds with `kubectl kustomize`, validates offline (Kubernetes schemas
of a pinned release; KEDA and Strimzi CRD schemas vendored as test data), and is wired to what
pawstream reads and serves: every PAWSTREAM_* variable a Settings field, probe paths and ports the
services' own, the scaling bounds from the topic's partitions."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from limits import parse_many

from api.routes.health import router as api_health_router
from pawstream.settings import Settings
from pawstream.topics import topic_configs, topic_plan
from stack.config_doc import settings_field_for_env
from stream.worker.health import HEALTHZ, READYZ
from stream.worker.worker_metrics import WorkerMetrics
from tests.support.deploy import ROOT
from tests.support.k8s import (
    K8S_DIR,
    KUBERNETES_VERSION,
    OVERLAYS,
    build,
    build_with_component,
    containers,
    crd_errors,
    env_of,
    errors,
    find,
    is_builtin,
    kubernetes_errors,
    one,
)

BENCH = ROOT / "bench" / "results" / "latest.md"
LIFECYCLE = ROOT / "bench" / "results" / "lifecycle.json"
LARGE_IMAGE_MARGIN_MB = 653 - 589  # peak RSS through 32 maximum-size images minus at full load
SECRET_KEYS = {  # set in the Secret, never in a ConfigMap
    "PAWSTREAM_API__API_KEY",
    "PAWSTREAM_KAFKA__SASL_USERNAME",
    "PAWSTREAM_KAFKA__SASL_PASSWORD",
    "PAWSTREAM_API__REDIS_URL",
    "PAWSTREAM_API__RATE_LIMIT_STORAGE",
}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, build(K8S_DIR / "overlays" / request.param)


def _settings(env: dict[str, str]) -> Settings:
    """Settings as a container with this environment builds them (secrets left out)."""
    values = {k: v for k, v in env.items() if v != "<secret>"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in values.items():
            mp.setenv(name, value)
        return Settings()


def _worker(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    (pair,) = [(d, c) for d, c in containers(objects) if d["metadata"]["name"] == "pawstream-worker"]
    return pair


def _container(objects: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    (c,) = one(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return c


def test_each_overlay_validates_against_kubernetes_and_the_vendored_crds(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = overlay
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ConfigMap",
        "NetworkPolicy",
        "ScaledObject",
    } <= kinds
    problems = {f"{o['kind']}/{o['metadata']['name']}": errors(o) for o in objects}
    assert not {k: v for k, v in problems.items() if v}, f"{name} against Kubernetes {KUBERNETES_VERSION}"


def test_the_strimzi_example_and_the_hpa_alternative_validate(tmp_path: Path) -> None:
    strimzi = build(K8S_DIR / "strimzi")
    assert {o["kind"] for o in strimzi} == {"Kafka", "KafkaNodePool", "KafkaTopic"}
    with_hpa = build_with_component(tmp_path, "dev", "hpa-cpu")
    assert not find(with_hpa, "ScaledObject"), "the HPA replaces the ScaledObject, never both"
    hpa = one(with_hpa, "HorizontalPodAutoscaler", "pawstream-worker")
    for o in [*strimzi, hpa]:
        assert not errors(o), (o["kind"], errors(o))
    worker_env = env_of(with_hpa, _worker(with_hpa)[1])
    assert hpa["spec"]["maxReplicas"] == _settings(worker_env).topics.partitions


def test_the_validators_refuse_what_a_cluster_would(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """Each check can fail: a misspelt field, a wrong type, a missing required field."""
    _, objects = overlay
    scaled = dict(one(objects, "ScaledObject", "pawstream-worker"))
    scaled["spec"] = {**scaled["spec"], "maxReplicaCont": 4}
    assert any("maxReplicaCont" in e for e in crd_errors(scaled))
    scaled["spec"] = {
        k: v for k, v in scaled["spec"].items() if k not in ("scaleTargetRef", "maxReplicaCont")
    }
    assert any("scaleTargetRef" in e for e in crd_errors(scaled))
    topic = {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": {"name": "t"}}
    assert crd_errors({**topic, "spec": {"partitions": "four"}})
    deployment = one(objects, "Deployment", "pawstream-worker")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    assert is_builtin(broken) and kubernetes_errors(broken)


def test_every_pawstream_variable_is_a_settings_field(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    names: set[str] = set()
    for cm in find(objects, "ConfigMap"):
        names |= set(cm.get("data", {}))
        assert not set(cm.get("data", {})) & SECRET_KEYS, "a secret in a ConfigMap"
    for secret in find(objects, "Secret"):
        names |= set(secret.get("data", {})) | set(secret.get("stringData", {}))
    for _, c in containers(objects):
        names |= {e["name"] for e in c.get("env", [])}
    for auth in find(objects, "TriggerAuthentication"):
        names |= {ref["key"] for ref in auth["spec"]["secretTargetRef"]}
    for so in find(objects, "ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            names |= {v for k, v in trigger["metadata"].items() if k.endswith("FromEnv")}
    assert all(n.startswith("PAWSTREAM_") for n in names), sorted(names)
    unknown = sorted(n for n in names if settings_field_for_env(n) is None)
    assert not unknown, f"{name}: not Settings fields: {unknown}"
    for _, c in containers(objects):
        _settings(env_of(objects, c))  # every literal value parses as its field


def test_probes_are_the_paths_and_ports_the_services_serve(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    api_paths = {route.path for route in api_health_router.routes}  # type: ignore[attr-defined]
    served = {
        "pawstream-worker": ({HEALTHZ, READYZ}, lambda s: s.worker.metrics_port),
        "pawstream-api": (api_paths, lambda s: s.api.port),
        # prometheus_client's exporter answers every path with the metrics.
        "pawstream-monitor": ({"/metrics"}, lambda s: s.monitoring.metrics_port),
    }
    for deployment, (paths, port_of) in served.items():
        c = _container(objects, deployment)
        settings = _settings(env_of(objects, c))
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert list(ports.values()) == [port_of(settings)], deployment
        probes = [c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in c]
        assert len(probes) >= 2, deployment
        for probe in probes:
            assert probe["httpGet"]["path"] in paths, (deployment, probe)
            assert ports[probe["httpGet"]["port"]] == port_of(settings)
        template = one(objects, "Deployment", deployment)["spec"]["template"]
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port_of(settings))
    worker = _container(objects, "pawstream-worker")
    assert (worker["livenessProbe"]["httpGet"]["path"], worker["readinessProbe"]["httpGet"]["path"]) == (
        HEALTHZ,
        READYZ,
    )
    # Every exporter must answer from outside its pod.
    for deployment, field in (
        ("pawstream-worker", "worker.metrics_host"),
        ("pawstream-monitor", "monitoring.metrics_host"),
        ("pawstream-api", "api.host"),
    ):
        section, attr = field.split(".")
        settings = _settings(env_of(objects, _container(objects, deployment)))
        assert getattr(getattr(settings, section), attr) == "0.0.0.0", deployment
    api_service = one(objects, "Service", "pawstream-api")
    assert api_service["spec"]["ports"][0]["targetPort"] == "http"
    assert api_service["spec"]["sessionAffinity"] == "ClientIP"  # /ui state is per replica
    monitor_url = _settings(env_of(objects, _container(objects, "pawstream-api"))).api.monitoring_url
    assert monitor_url == "http://pawstream-monitor:9102/metrics"
    assert one(objects, "Service", "pawstream-monitor")["spec"]["ports"][0]["port"] == 9102


def _measured_worker_throughput() -> float:
    """Images/s of one fp32 worker at full load (bench/results/latest.md, `pipeline fp32 | max`)."""
    m = re.search(r"^\| pipeline fp32 \| max \| ([\d.]+) \|", BENCH.read_text(encoding="utf-8"), re.M)
    assert m, "bench/results/latest.md has no `pipeline fp32 | max` row"
    return float(m[1])


def _measured_peak_rss_mib() -> float:
    """The registry-served worker's peak across a hot reload (bench-lifecycle), plus what a batch of
    maximum-size images adds (653 vs 589 MB peak, tests/stream/worker/test_worker_memory.py).
    MB taken as MiB: slightly over, never under."""
    reload = json.loads(LIFECYCLE.read_text(encoding="utf-8"))["reload"]
    return max(reload["vm_hwm_after_move_mb"], reload["rss_peak_reload_mb"]) + LARGE_IMAGE_MARGIN_MB


def _mib(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_keda_scales_on_the_worker_group_lag_within_the_partitions(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = overlay
    deployment, worker = _worker(objects)
    env = env_of(objects, worker)
    settings = _settings(env)
    so = one(objects, "ScaledObject", "pawstream-worker")["spec"]
    assert so["scaleTargetRef"] == {
        "name": deployment["metadata"]["name"],
        "envSourceContainerName": "worker",
    }
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    assert so["maxReplicaCount"] == settings.topics.partitions, name
    # A rollout must not add a pod beyond maxReplicaCount = the partitions: it would get none,
    # never pass /readyz, and the rollout would hang (README, "The partition limit").
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert 1 <= so["minReplicaCount"] <= so["fallback"]["replicas"] <= so["maxReplicaCount"]
    (trigger,) = so["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    # KEDA reads these from the worker container's environment: the group is Faust's app id.
    assert {meta["bootstrapServersFromEnv"], meta["consumerGroupFromEnv"], meta["topicFromEnv"]} <= set(env)
    assert env[meta["consumerGroupFromEnv"]] == settings.worker.app_id
    assert env[meta["topicFromEnv"]] == settings.topics.images
    assert meta["offsetResetPolicy"] == "earliest" and meta["allowIdleConsumers"] == "false"
    # The threshold: ~10 s of one worker's measured throughput, and above what a saturated worker
    # that keeps up holds uncommitted (its buffer, a batch, a commit interval of images), or a
    # busy but healthy group would scale out (README, "Kubernetes").
    threshold = int(meta["lagThreshold"])
    per_worker = _measured_worker_throughput()
    w = settings.worker
    floor = w.buffer_max + w.micro_batch_max + math.ceil(w.commit_interval_s * per_worker)
    assert 2 * floor <= threshold <= 12 * per_worker, (threshold, floor, per_worker)
    behavior = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300, "a cooldown that does not flap"


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_busy_time_trigger_holds_a_group_that_keeps_up(tmp_path: Path, name: str) -> None:
    objects = build_with_component(tmp_path, name, "keda-busy-time")
    so = one(objects, "ScaledObject", "pawstream-worker")
    assert not crd_errors(so), crd_errors(so)
    lag, busy = so["spec"]["triggers"]
    assert (lag["type"], busy["type"]) == ("kafka", "prometheus")
    # The query reads the workers' own histograms (the names they export).
    metrics = WorkerMetrics()
    exported = {metrics.inference_seconds._name, metrics.decode_seconds._name}
    assert set(re.findall(r"(pawstream_\w+)_sum", busy["metadata"]["query"])) == exported
    # Steady traffic the workers keep up with: lag alone asks for fewer workers than needed (the
    # cycle in the README); busy time asks for at least as many as the traffic needs.
    per_worker = _measured_worker_throughput()
    threshold = float(busy["metadata"]["threshold"])
    assert 0.5 <= threshold < 1.0
    settings = _settings(env_of(objects, _worker(objects)[1]))
    w = settings.worker
    held = w.buffer_max + w.micro_batch_max + math.ceil(w.commit_interval_s * per_worker)
    for rate in (60.0, 120.0, 200.0):
        needed = math.ceil(rate / per_worker)
        assert math.ceil(needed * held / int(lag["metadata"]["lagThreshold"])) < needed or needed == 1
        assert math.ceil(rate / per_worker / threshold) >= needed


def test_the_api_rate_limit_does_not_cap_the_workers(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """With buckets shared across replicas (Redis), the key's limit is the whole API's rate: it
    must allow a submit and a prediction fetch for every image the workers can classify."""
    name, objects = overlay
    api = _settings(env_of(objects, _container(objects, "pawstream-api"))).api
    if api.store != "redis":  # one replica, its buckets in memory (dev)
        pytest.skip(f"{name}: one replica, no shared buckets")
    (limit,) = parse_many(api.rate_limit or "")
    per_s = limit.amount / limit.get_expiry()
    so = one(objects, "ScaledObject", "pawstream-worker")["spec"]
    assert per_s >= 0.99 * 2 * so["maxReplicaCount"] * _measured_worker_throughput(), (name, per_s)


def test_worker_pod_is_sized_and_stops_gracefully(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    deployment, worker = _worker(objects)
    settings = _settings(env_of(objects, worker))
    pod = deployment["spec"]["template"]["spec"]
    # A micro-batch at the measured speed, plus leaving the group, fits in the grace period many times.
    batch_s = settings.worker.micro_batch_max / _measured_worker_throughput()
    assert pod["terminationGracePeriodSeconds"] >= 10 * batch_s + settings.kafka.session_timeout_s
    res = worker["resources"]
    assert _mib(res["requests"]["memory"]) >= _measured_peak_rss_mib()
    assert _mib(res["limits"]["memory"]) >= 1.5 * _measured_peak_rss_mib()
    assert int(res["requests"]["cpu"]) == settings.worker.torch_threads


def test_pods_are_restricted_and_read_the_model_from_the_registry(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = overlay
    (namespace,) = find(objects, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for deployment, c in containers(objects):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert not [v for v in pod.get("volumes", []) if "hostPath" in v], "no host paths"
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        settings = _settings(env_of(objects, c))
        assert settings.model.source == "registry"
        assert re.match(r"https?://", settings.training.mlflow_tracking_uri)


def test_only_the_api_is_reachable_from_outside(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    policies = find(objects, "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert deny and deny[0]["spec"]["policyTypes"] == ["Ingress"]
    api_labels = one(objects, "Deployment", "pawstream-api")["spec"]["template"]["metadata"]["labels"]
    for p in policies:
        for rule in p["spec"].get("ingress", []):
            if "from" not in rule:  # open to every source
                selector = p["spec"]["podSelector"]["matchLabels"]
                assert selector.items() <= api_labels.items(), p["metadata"]["name"]
                assert [port["port"] for port in rule["ports"]] == ["http"]
            else:
                for peer in rule["from"]:
                    assert "ipBlock" not in peer, p["metadata"]["name"]
                    if "namespaceSelector" in peer:
                        assert peer["namespaceSelector"]["matchLabels"], "a named namespace only"
    services = find(objects, "Service")
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)


def test_strimzi_topics_follow_the_settings_plan() -> None:
    strimzi = build(K8S_DIR / "strimzi")
    dev = build(K8S_DIR / "overlays" / "dev")
    settings = _settings(env_of(dev, _worker(dev)[1]))
    (kafka,) = find(strimzi, "Kafka")
    assert settings.kafka.bootstrap_servers == f"{kafka['metadata']['name']}-kafka-bootstrap.kafka.svc:9092"
    topics = {t["spec"]["topicName"]: t["spec"] for t in find(strimzi, "KafkaTopic")}
    assert {name: spec["partitions"] for name, spec in topics.items()} == topic_plan(settings)
    assert {spec["replicas"] for spec in topics.values()} == {settings.topics.replication_factor}
    (pool,) = find(strimzi, "KafkaNodePool")
    assert pool["spec"]["replicas"] >= settings.topics.replication_factor
    for name, configs in topic_configs(settings).items():
        assert {k: str(v) for k, v in topics[name]["config"].items()} == configs, name
