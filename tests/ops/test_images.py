"""The three images (``compose/<role>/Dockerfile``) built with buildah and run with podman, the
way Docker would build and run them, against a private Redis and a fresh MariaDB database:
``fluxfunc db upgrade`` from the server image, the Server's ``/healthz`` and its image
HEALTHCHECK (on a port set by ``FLUXFUNC_SERVER__PORT``), the Worker's and Beat's ``--check``,
``examples/demo`` deployed, a function served by the worker container, and a SIGTERM that each
container answers with exit 0.

Containers run as the chart runs them: the image's non-root user, a read-only root filesystem
with a writable /tmp. No registry is reachable here, so the base image is made by
``.ci/image-base`` (a local stand-in when the real one is absent; it says so). Image sizes and
build times are printed, never asserted.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from fluxfunc_common.proc.localredis import LocalRedis, free_port

pytestmark = [pytest.mark.mysql, pytest.mark.slow, pytest.mark.xdist_group("images"),
              pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROLES = ("server", "worker", "beat")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PODMAN = ["podman", "--storage-driver", "overlay"]
# What works on this kind of VM (docs/kubernetes.md, "Images"): runc (crun fails on its
# cgroups), rlimits within the hard limits, an init that forwards signals, the host network.
RUN = ["run", "--runtime", "runc", "--network", "host", "--init",
       "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def tools_or_skip() -> None:
    missing = [t for t in ("buildah", "podman", "debootstrap") if shutil.which(t) is None]
    if missing:
        why = f"{', '.join(missing)} not installed (apt-get install -y buildah podman runc debootstrap)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {why}: .ci/run installs them")
        pytest.skip(why)


def run(argv: list[str], timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check:
        assert out.returncode == 0, (f"{' '.join(argv[:6])} … exit {out.returncode}:\n"
                                     f"{out.stdout[-3000:]}{out.stderr[-3000:]}")
    return out


@dataclass
class Images:
    tags: dict[str, str]
    seconds: dict[str, float]
    sizes: dict[str, int] = field(default_factory=dict)
    base: str = ""
    base_seconds: float = 0.0
    tree: dict[str, str] = field(default_factory=dict)  # the sources the images were built from


def build(role: str, tag: str) -> float:
    """``buildah build`` of one Dockerfile, its layers cached in the local storage."""
    argv = ["buildah", "--storage-driver", "overlay", "build", "--isolation", "chroot",
            "--network", "host", "--pull-never", "--layers", "--format", "docker",
            "-f", f"compose/{role}/Dockerfile", "-t", tag]
    if CA_BUNDLE.is_file():  # pip in the build stage trusts what this machine trusts
        argv += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    started = time.monotonic()
    run([*argv, str(ROOT)], timeout=900)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def images() -> Images:
    tools_or_skip()
    started = time.monotonic()
    base = run(["bash", str(ROOT / ".ci/image-base")], timeout=900).stdout.strip()
    base_seconds = time.monotonic() - started
    tags = {role: f"localhost/fluxfunc-{role}:test" for role in ROLES}
    before = tree_sums()
    seconds = {role: build(role, tags[role]) for role in ROLES}
    after = tree_sums()
    # a file edited while the images were built may be in either state: not compared
    tree = {k: v for k, v in before.items() if after.get(k) == v}
    found = Images(tags, seconds, base=base, base_seconds=base_seconds, tree=tree)
    for role, tag in tags.items():
        found.sizes[role] = int(run([*PODMAN, "image", "inspect", tag, "--format", "{{.Size}}"]).stdout)
    return found


@dataclass
class Containers:
    """Containers of one test, removed at the end; their logs on failure."""

    prefix: str = field(default_factory=lambda: "fluxfunc-test-" + secrets.token_hex(4))
    names: list[str] = field(default_factory=list)

    def start(self, name: str, image: str, args: list[str], *command: str) -> str:
        full = f"{self.prefix}-{name}"
        self.names.append(full)
        run([*PODMAN, *RUN, "-d", "--name", full, *args, image, *command])
        return full

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n" + run([*PODMAN, "logs", n], check=False).stdout[-2000:]
                         + run([*PODMAN, "logs", n], check=False).stderr[-2000:] for n in self.names)

    def remove(self) -> None:
        for name in self.names:
            run([*PODMAN, "rm", "-f", "-t", "0", name], check=False)


@pytest.fixture
def containers() -> Iterator[Containers]:
    box = Containers()
    try:
        yield box
    except BaseException:
        raise
    finally:
        box.remove()


def wait(what: str, probe: object, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        if probe():  # type: ignore[operator]
            return
        assert time.monotonic() < deadline, f"{what} not within {within}s"
        time.sleep(0.3)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def call(url: str, token: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def exit_code_after_sigterm(name: str) -> int:
    run([*PODMAN, "kill", "--signal", "TERM", name])
    out = run([*PODMAN, "wait", name], timeout=120)
    return int(out.stdout.strip().splitlines()[-1])


def test_images_build_and_serve(images: Images, containers: Containers, mysql_url: str,
                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    redis = LocalRedis(tmp_path / "redis")
    redis.start()
    try:
        port = free_port()
        config = tmp_path / "fluxfunc.yaml"
        config.write_text(yaml.safe_dump({
            "redis": {"url": redis.url, "namespace": "img" + secrets.token_hex(4)},
            "store": {"auto_migrate": False},
            "server": {"host": "127.0.0.1", "shutdown_seconds": 5},
            "worker": {"concurrency": 2, "drain_seconds": 5},
            "log": {"format": "json"},
        }))
        config.chmod(0o644)
        # as the chart runs them: read-only root, no capabilities, no privilege gain
        args = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--health-interval", "disable",
                "-v", f"{config}:/etc/fluxfunc/fluxfunc.yaml:ro",
                "-e", "FLUXFUNC_CONFIG=/etc/fluxfunc/fluxfunc.yaml",
                "-e", "FLUXFUNC_SECRET=image-test-secret-" + secrets.token_hex(16),
                "-e", f"FLUXFUNC_STORE__URL={mysql_url}",
                "-e", f"FLUXFUNC_SERVER__PORT={port}"]
        server_image = images.tags["server"]

        def once(*command: str) -> str:
            return run([*PODMAN, *RUN, "--rm", *args, server_image, *command], timeout=120).stdout

        try:
            once("fluxfunc", "db", "upgrade")
            token = once("fluxfunc", "admin", "create-token", "--name", "image-test").strip().splitlines()[-1]
            names = {role: containers.start(role, images.tags[role], args) for role in ROLES}
            url = f"http://127.0.0.1:{port}"
            wait("server /healthz", lambda: http_ok(url + "/healthz"))
            wait("server /readyz", lambda: http_ok(url + "/readyz"))
            # the image's own HEALTHCHECK, on FLUXFUNC_SERVER__PORT (not the default 8088)
            run([*PODMAN, "healthcheck", "run", names["server"]], timeout=60)
            for role in ("worker", "beat"):
                check = [*PODMAN, "exec", names[role], f"fluxfunc-{role}", "--check"]
                wait(f"{role} --check", lambda check=check: run(check, check=False).returncode == 0)
                run([*PODMAN, "healthcheck", "run", names[role]], timeout=60)
            env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXFUNC_")}
            deployed = subprocess.run([str(BIN / "fluxfunc"), "deploy", str(ROOT / "examples/demo"),
                                       "--url", url, "--token", token], capture_output=True, text=True,
                                      timeout=120, env=env)
            assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            result: dict[str, object] = {}

            def served() -> bool:  # the worker picks the published scripts up within seconds
                nonlocal result
                status, result = call(url + "/api/v1/func/demo__basic.plus", token,
                                      {"kwargs": {"x": 2, "y": 3}})
                return status == 200

            wait("demo__basic.plus served by the worker container", served)
            assert result["data"]["result"] == {"sum": 5}, result  # type: ignore[index]
            codes = {role: exit_code_after_sigterm(names[role]) for role in ("worker", "beat", "server")}
            assert codes == {"server": 0, "worker": 0, "beat": 0}, containers.logs()
        except BaseException:
            print(containers.logs(), file=sys.stderr)
            raise
    finally:
        redis.stop()
    with capsys.disabled():
        print(f"\nimages: {images.base} ({images.base_seconds:.1f}s)")
        for role in ROLES:
            print(f"  fluxfunc-{role}: {images.sizes[role] / 1e6:.0f} MB, built in "
                  f"{images.seconds[role]:.1f}s (with the layers cached on this machine)")


SOURCE_SUMS = """
import hashlib, json, pathlib, sysconfig
site = pathlib.Path(sysconfig.get_paths()["purelib"])
for base in {site, pathlib.Path("/usr/local/lib/python3.11/dist-packages")}:
    if (base / "fluxfunc_common").is_dir():
        print(json.dumps({str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest()
                          for p in base.glob("fluxfunc_*/**/*") if p.suffix in (".py", ".lua")}))
"""


def tree_sums() -> dict[str, str]:
    out = {}
    for pkg in [ROOT / "libs/common/fluxfunc_common", *sorted((ROOT / "services").glob("*/fluxfunc_*"))]:
        for path in pkg.rglob("*"):
            if path.suffix in (".py", ".lua") and "__pycache__" not in path.parts:
                out[str(path.relative_to(pkg.parent))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_images_hold_this_tree(images: Images) -> None:
    """The installed code is the working tree's, file for file (no stale cached layer)."""
    expected = images.tree
    assert len(expected) > 20
    for tag in images.tags.values():
        out = run([*PODMAN, *RUN, "--rm", "--entrypoint", "python", tag, "-c", SOURCE_SUMS], timeout=120)
        found = json.loads(out.stdout.strip().splitlines()[-1])
        differ = sorted(k for k in expected if expected[k] != found.get(k))
        assert not differ, f"{tag}: {differ[:10]}"


def test_image_config(images: Images) -> None:
    """Non-root user, the role's command, and a HEALTHCHECK kept (docker format)."""
    for role, tag in images.tags.items():
        conf = json.loads(run([*PODMAN, "image", "inspect", tag, "--format", "{{json .Config}}"]).stdout)
        assert conf["User"].split(":")[0] not in ("", "0", "root"), conf["User"]
        assert conf["Cmd"] == [f"fluxfunc-{role}"]
        inspect = [*PODMAN, "image", "inspect", tag, "--format"]
        check = json.loads(run([*inspect, "{{json .HealthCheck}}"]).stdout)
        assert check and check.get("Test"), f"{role}: HEALTHCHECK lost"
