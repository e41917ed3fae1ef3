"""Extra Python packages on the worker: pip into a content-addressed folder (offline, from
hand-made wheels), the shadowing refusal, the child's ``sys.path``, the pool's switch (new
tasks get the new set, a running task finishes on the old one, used children are recycled)
and the manager's published state."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.wheels import build_wheel, module_wheel
from tests.worker.conftest import Bench

from fluxfunc_common import packages
from fluxfunc_common.envelope import TaskEnvelope
from fluxfunc_common.settings import PackagesSettings, Settings
from fluxfunc_worker import pipinstall, sitepath
from fluxfunc_worker.packages import PackageManager
from fluxfunc_worker.pipinstall import Installer, InstallFailed
from fluxfunc_worker.pool import Pool, RpcError
from fluxfunc_worker.run import run_message

# --- the installer (real pip, offline) ------------------------------------------------------------


def installer(tmp_path: Path, **options: Any) -> Installer:
    settings = PackagesSettings(dir=str(tmp_path / "sets"), offline=True, **options)
    return Installer(settings, str(tmp_path / "res"))


async def test_a_set_is_installed_offline_into_its_content_addressed_folder(tmp_path: Path) -> None:
    module_wheel(tmp_path / "res" / "packages", "demo-lib", "1.0", "one")
    inst = installer(tmp_path)
    folder = await inst.install(["demo-lib==1.0"])
    assert folder == tmp_path / "sets" / packages.folder_hash(["demo-lib==1.0"])
    assert (folder / "demo_lib" / "__init__.py").read_text() == "VALUE = 'one'\n"
    assert [p.name for p in (tmp_path / "sets").iterdir()] == [folder.name], "no temporary left"
    before = folder.stat().st_mtime_ns
    assert await inst.install(["demo-lib==1.0"]) == folder  # this machine has it: no pip run
    assert folder.stat().st_mtime_ns == before


async def test_two_installs_of_one_set_at_once_end_in_one_folder(tmp_path: Path) -> None:
    module_wheel(tmp_path / "res" / "packages", "demo-lib", "1.0", "one")
    first, second = installer(tmp_path), installer(tmp_path)
    a, b = await asyncio.gather(first.install(["demo-lib==1.0"]), second.install(["demo-lib==1.0"]))
    assert a == b and (a / "demo_lib").is_dir()
    assert [p.name for p in (tmp_path / "sets").iterdir()] == [a.name]


async def test_a_missing_package_fails_with_the_end_of_pips_output(tmp_path: Path) -> None:
    (tmp_path / "res" / "packages").mkdir(parents=True)
    with pytest.raises(InstallFailed) as caught:
        await installer(tmp_path).install(["no-such-package-fluxfunc-test==9.9"])
    assert "pip install failed" in str(caught.value)
    assert "no-such-package-fluxfunc-test" in str(caught.value)
    assert len(str(caught.value).splitlines()) <= packages.ERROR_LINES + 1
    assert list((tmp_path / "sets").iterdir()) == [], "nothing half-installed stays"


@pytest.mark.parametrize(("module", "what"), [("json", "standard library module 'json'"),
                                              ("fluxfunc_worker", "fluxfunc's own modules")])
async def test_a_package_that_shadows_the_stdlib_or_fluxfunc_is_refused(
        tmp_path: Path, module: str, what: str) -> None:
    build_wheel(tmp_path / "res" / "packages", "sneaky", "1.0", {f"{module}/__init__.py": "X = 1\n"})
    with pytest.raises(InstallFailed) as caught:
        await installer(tmp_path).install(["sneaky==1.0"])
    message = str(caught.value)
    assert message.startswith("refused: sneaky installs the top-level module") and what in message
    assert list((tmp_path / "sets").iterdir()) == []


def test_the_pip_command_follows_the_settings(tmp_path: Path) -> None:
    req, target = tmp_path / "r.txt", tmp_path / "t"
    online = pipinstall.pip_command(req, target, PackagesSettings(), None)
    assert online[:4] == [sys.executable, "-m", "pip", "install"] and "--no-index" not in online
    assert "--target" in online and "--no-deps" not in online
    offline = pipinstall.pip_command(req, target, PackagesSettings(
        offline=True, index_url="https://mirror.example/simple"), tmp_path)
    assert offline[-5:] == ["--find-links", str(tmp_path), "--index-url",
                            "https://mirror.example/simple", "--no-index"]


def test_top_level_names_and_who_installed_them(tmp_path: Path) -> None:
    for path in ("pkg/__init__.py", "single.py", "_speed.cpython-311-x86_64-linux-gnu.so",
                 "bin/tool", "__pycache__/x.pyc", "extra.pth", "README"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    (tmp_path / "demo-1.0.dist-info").mkdir()
    (tmp_path / "demo-1.0.dist-info" / "RECORD").write_text("pkg/__init__.py,,\nsingle.py,,\n")
    names = pipinstall.top_level_names(tmp_path)
    assert names == {"pkg": "demo", "single": "demo", "_speed": "?"}
    assert pipinstall.refused(names) is None


def test_old_unused_sets_and_stale_temporaries_are_pruned(tmp_path: Path) -> None:
    inst = installer(tmp_path, keep_unused_hours=1)
    root = tmp_path / "sets"
    old, used, fresh = (root / (c * 32) for c in "abc")
    tmp = root / ".tmp-x"
    for folder in (old, used, fresh, tmp):
        folder.mkdir(parents=True)
    hours_ago = time.time() - 7200
    for folder in (old, used, tmp):
        os.utime(folder, (hours_ago, hours_ago))
    assert sorted(inst.prune([used])) == sorted([old.name, tmp.name])
    assert sorted(p.name for p in root.iterdir()) == sorted([used.name, fresh.name])


# --- the child's sys.path -------------------------------------------------------------------------


def test_the_set_is_appended_after_the_standard_library_and_replaced_on_a_switch(tmp_path: Path) -> None:
    saved = list(sys.path)
    try:
        sitepath.use(str(tmp_path / "a"))
        assert sys.path[-1] == str(tmp_path / "a") and sys.path[:-1] == saved
        sitepath.use(str(tmp_path / "b"))
        assert sys.path[-1] == str(tmp_path / "b") and str(tmp_path / "a") not in sys.path
        sitepath.use(None)
        assert sys.path == saved
    finally:
        sitepath.use(None)
        sys.path[:] = saved


# --- the pool's switch ----------------------------------------------------------------------------

CODE = '''
import os
import time


@DFF.API("Value")
def value(nap=0.0):
    time.sleep(nap)
    import pkgswitch_demo
    return [pkgswitch_demo.VALUE, os.getpid()]
'''


async def rpc(method: str, params: dict[str, Any], task: object) -> Any:
    if method == "script" and params.get("scriptId") == "demo__pkgs":
        return [CODE, 1]
    raise RpcError(f"no {method} here")


def value_message(nap: float = 0.0) -> Any:
    env = TaskEnvelope(id=f"task-{time.monotonic_ns()}", func_id="demo__pkgs.value",
                       kwargs={"nap": nap}, trigger_time=time.time())
    return run_message(env)


def result(outcome: Any) -> list[Any]:
    assert outcome.report is not None and outcome.report.get("status") == "success", outcome
    found: list[Any] = outcome.report["result"]
    return found


def package_folder(root: Path, value: str) -> str:
    (root / value / "pkgswitch_demo").mkdir(parents=True)
    (root / value / "pkgswitch_demo" / "__init__.py").write_text(f"VALUE = {value!r}\n")
    return str(root / value)


async def test_new_tasks_get_the_new_set_and_a_running_task_finishes_on_the_old(tmp_path: Path) -> None:
    a, b = package_folder(tmp_path, "a"), package_folder(tmp_path, "b")
    async with Pool(2, max_tasks=1000, memory_mb=256, rpc=rpc) as pool:
        pool.switch_packages(a)
        first, first_pid = result(await pool.run(value_message(), 10))
        assert first == "a"
        long_run = pool.submit(value_message(nap=0.5), 10)  # sent to the other child with set "a"
        assert long_run.child is not None
        pool.switch_packages(b)
        second, second_pid = result(await pool.run(value_message(), 10))
        assert second == "b" and second_pid != first_pid, "the idle child that used 'a' was recycled"
        still, long_pid = result(await pool.wait(long_run))
        assert still == "a", "a running task finishes on the set it started with"
        third, third_pid = result(await pool.run(value_message(), 10))
        fourth, fourth_pid = result(await pool.run(value_message(), 10))
        assert third == fourth == "b" and long_pid not in (third_pid, fourth_pid)


async def test_a_child_that_ran_no_task_takes_the_new_set_without_a_restart(tmp_path: Path) -> None:
    a = package_folder(tmp_path, "a")
    async with Pool(1, max_tasks=1000, memory_mb=256, rpc=rpc) as pool:
        pids = pool.pids()
        pool.switch_packages(a)
        value, pid = result(await pool.run(value_message(), 10))
        assert value == "a" and [pid] == pids


# --- the manager ----------------------------------------------------------------------------------


class FakePool:
    def __init__(self) -> None:
        self.folders: list[str | None] = []

    def switch_packages(self, folder: str | None) -> None:
        self.folders.append(folder)


def manager_settings(bench: Bench, make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    return make_settings(packages={"dir": str(tmp_path / "sets"), "offline": True})


async def test_the_manager_installs_switches_and_keeps_the_old_set_on_failure(
        bench: Bench, make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = manager_settings(bench, make_settings, tmp_path)
    module_wheel(Path(settings.resources.path) / "packages", "demo-lib", "1.0", "one")
    pool = FakePool()
    manager = PackageManager(settings, bench.redis, bench.keys, bench.store, pool, instance="w1")
    await manager.prepare()
    assert manager.status.state == "ok" and manager.status.hash == "" and pool.folders == [None]

    await packages.save_deployment(bench.store, ["demo-lib==1.0"])
    await manager.sync()
    wanted = packages.list_hash(["demo-lib==1.0"])
    folder = str(tmp_path / "sets" / packages.folder_hash(["demo-lib==1.0"]))
    assert pool.folders == [None, folder]
    assert (manager.status.state, manager.status.hash, manager.status.lines) == ("ok", wanted, 1)

    await packages.save_deployment(bench.store, ["demo-lib==1.0", "not-there-fluxfunc==1"])
    await manager.sync()
    assert pool.folders == [None, folder], "the failed set is not switched to"
    status = manager.status
    assert status.state == "failed" and status.hash == wanted and status.wanted != wanted
    assert status.error and "not-there-fluxfunc" in status.error
    [published] = await packages.worker_states(bench.redis, bench.keys, ["w1"])
    assert published.state == "failed" and published.error == status.error

    await manager.sync()  # the same failed set is not retried at once
    assert manager.status.state == "failed"
    await packages.save_deployment(bench.store, ["demo-lib==1.0"])  # back to the set in use
    await manager.sync()
    assert (manager.status.state, manager.status.wanted, manager.status.error) == ("ok", wanted, None)


async def test_a_restarted_worker_falls_back_to_the_last_set_of_its_machine(
        bench: Bench, make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = manager_settings(bench, make_settings, tmp_path)
    module_wheel(Path(settings.resources.path) / "packages", "demo-lib", "1.0", "one")
    await packages.save_deployment(bench.store, ["demo-lib==1.0"])
    first = FakePool()
    await PackageManager(settings, bench.redis, bench.keys, bench.store, first, instance="w1").prepare()
    await packages.save_deployment(bench.store, ["not-there-fluxfunc==1"])
    second = FakePool()
    manager = PackageManager(settings, bench.redis, bench.keys, bench.store, second, instance="w2")
    await manager.prepare()
    assert manager.status.state == "failed"
    assert second.folders == first.folders and manager.status.hash == packages.list_hash(["demo-lib==1.0"])


async def test_the_watch_loop_follows_the_version_key(
        bench: Bench, make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = manager_settings(bench, make_settings, tmp_path)
    module_wheel(Path(settings.resources.path) / "packages", "demo-lib", "1.0", "one")
    pool = FakePool()
    manager = PackageManager(settings, bench.redis, bench.keys, bench.store, pool, instance="w1")
    await manager.prepare()
    stop = asyncio.Event()
    watching = asyncio.create_task(manager.watch(stop))
    try:
        await packages.save_deployment(bench.store, ["demo-lib==1.0"])
        await packages.announce(bench.redis, bench.keys)
        deadline = time.monotonic() + 30
        while manager.status.hash != packages.list_hash(["demo-lib==1.0"]):
            assert time.monotonic() < deadline, manager.status
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await watching
    assert await bench.redis.get(bench.keys.python_packages_status("w1")) is None, "removed at the end"
