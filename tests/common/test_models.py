"""The typed domain models and their rules: parsing store rows, the queue and its deadline,
the effective timeout, retries, the result cache, the one kwargs check, and the decorator
options publish accepts."""

from __future__ import annotations

import pytest

from fluxfunc_common import scripts
from fluxfunc_common.envelope import Origin
from fluxfunc_common.errors import ScriptError
from fluxfunc_common.models import (
    MIN_SYNC_QUEUE_WAIT,
    PLACEHOLDERS,
    AsyncApi,
    CronJob,
    EnvVariable,
    Func,
    FuncOptions,
    SyncApi,
    is_placeholder,
)
from fluxfunc_common.models import decorator as api_options
from fluxfunc_common.settings import TasksSettings
from fluxfunc_common.tasks import build_envelope

TASKS = TasksSettings(default_timeout=30, max_timeout=3600, result_ttl=3600)


def func_row(**extra: object) -> dict[str, object]:
    """A catalogue row as publish writes it (``plus(x, y=1)``)."""
    return {
        "id": "demo__basic.plus", "scriptId": "demo__basic", "scriptSetId": "demo", "name": "plus",
        "title": "Plus", "description": None, "definition": "plus(x, y=1)", "args": ["x", "y"],
        "kwargsSpec": {"x": {"required": True}, "y": {"default": "1"}}, "varKwargs": False,
        "isAsync": False,
        "extraConfig": {"timeout": 30, "expires": None, "cacheResult": None, "queue": None,
                        "fixedCronExpr": None, "retries": 0, **extra},
        "category": None, "tags": [], "createTime": 1700000000.5, "updateTime": 1700000001,
    }


# --- parsing rows ---------------------------------------------------------------------------------
def test_a_func_row_parses_once_into_typed_fields() -> None:
    func = Func.from_row(func_row(queue="slow", retries=2))
    assert func.id == "demo__basic.plus" and func.script_id == "demo__basic"
    assert func.kwargs_spec["x"].required and func.kwargs_spec["y"].default == "1"
    assert func.options.queue == "slow" and func.options.retries == 2
    assert func.version == "1700000001"  # the update time, as stored


def test_nulls_and_legacy_values_mean_the_defaults() -> None:
    row = {"id": "a.f", "extraConfig": None, "tags": None, "varKwargs": None}
    func = Func.from_row(row)
    assert func.options == FuncOptions() and func.tags == () and not func.var_kwargs
    assert Func.from_row({"id": "a.g", "extraConfig": {"queue": 3}}).options.queue == "3"
    assert Func.from_row({"id": "a.h", "extraConfig": {"queue": ""}}).options.queue is None
    assert Func.of(func) is func and Func.of(row) == func


def test_entry_points_and_env_variables() -> None:
    api = SyncApi.from_row({"id": "sapi-1", "funcId": "a.f", "kwargs": None, "isDisabled": None,
                            "expireTime": "2026-01-01T00:00:00Z", "apiAuth": {"type": "none"}})
    assert api.kwargs == {} and not api.is_disabled and api.api_auth == {"type": "none"}
    assert api.expired(api.expire_time or 0) and not api.expired((api.expire_time or 0) - 1)
    assert not AsyncApi.from_row({"id": "aapi-1", "funcId": "a.f"}).expired(1e12)
    job = CronJob.from_row({"id": "cron-1", "funcId": "a.f", "cronExpr": "* * * * *",
                            "misfirePolicy": "bogus", "overlapPolicy": None})
    assert (job.misfire_policy, job.overlap_policy) == ("fireOnce", "skip")
    secret = EnvVariable.from_row({"id": "pw", "valueType": "password", "valueCipher": "x"})
    assert secret.is_password and secret.presented().value_cipher is None
    assert EnvVariable.from_row({"id": "n", "valueType": None, "value": "1"}).value_type == "string"


def test_the_implicit_job_of_a_fixed_cron_expr() -> None:
    func = Func.from_row(func_row(fixedCronExpr="*/5 * * * *"))
    job = CronJob.implicit_for(func)
    assert job is not None and job.id == "cron-fixed-demo__basic.plus" and job.implicit
    assert (job.func_id, job.cron_expr, job.kwargs, job.overlap_policy) == (
        func.id, "*/5 * * * *", {}, "skip")
    assert CronJob.implicit_for(Func.from_row(func_row())) is None


# --- the rules ---------------------------------------------------------------------------------------
def test_queue_by_option_else_by_origin() -> None:
    plain = FuncOptions()
    assert [plain.queue_name(o) for o in (Origin.SYNC_API, Origin.ASYNC_API, Origin.CRON_JOB,
                                          Origin.DIRECT, Origin.CHILD)] == [
        "default", "async", "cron", "default", "default"]
    assert FuncOptions(queue="slow").queue_name(Origin.CRON_JOB) == "slow"


def test_effective_timeout_defaults_and_caps() -> None:
    assert FuncOptions().effective_timeout(TASKS) == 30
    assert FuncOptions(timeout=5).effective_timeout(TASKS) == 5
    assert FuncOptions(timeout=10_000).effective_timeout(TASKS) == 3600


def test_queue_deadline_is_expires_else_unbounded_except_for_sync_calls() -> None:
    assert FuncOptions(expires=7).queue_wait(60, sync=True) == 7
    assert FuncOptions(expires=7).queue_deadline(100, 60, sync=False) == 107
    assert FuncOptions().queue_wait(5, sync=True) == MIN_SYNC_QUEUE_WAIT  # at least 30 s
    assert FuncOptions().queue_wait(90, sync=True) == 90  # else the timeout
    assert FuncOptions().queue_deadline(100, 90, sync=False) is None


def test_retries_and_result_cache() -> None:
    assert FuncOptions().max_attempts == 1 and FuncOptions(retries=3).max_attempts == 4
    assert FuncOptions(cache_result=None).cache_seconds is None
    assert FuncOptions(cache_result=0.5).cache_seconds is None
    assert FuncOptions(cache_result=60).cache_seconds == 60


def test_the_envelope_follows_the_rules() -> None:
    func = Func.from_row(func_row(queue="slow", retries=2, expires=10, timeout=9999))
    env = build_envelope(func, {"x": 1}, origin=Origin.ASYNC_API, now=1000.0, settings=TASKS,
                         eta=1005.0)
    assert (env.queue, env.max_attempts, env.timeout, env.expires) == ("slow", 3, 3600, 1015.0)
    plain = build_envelope(func_row(), {"x": 1}, origin=Origin.CRON_JOB, now=1000.0, settings=TASKS)
    assert (plain.queue, plain.max_attempts, plain.expires) == ("cron", 1, None)


# --- the one kwargs check ------------------------------------------------------------------------------
def test_kwargs_check_of_a_call() -> None:
    func = Func.from_row(func_row())
    assert not func.check_kwargs({"x": 1})
    problems = func.check_kwargs({"y": 2, "z": 3, "a": 4})
    assert problems.unknown == ("a", "z") and problems.missing == ("x",)
    assert problems.accepted == ("x", "y")
    loose = Func.from_row({**func_row(), "varKwargs": True})
    assert not loose.check_kwargs({"x": 1, "anything": 2})


def test_kwargs_check_of_fixed_kwargs() -> None:
    func = Func.from_row(func_row())
    # an API entry: its caller adds the rest, so only unknown names count
    assert not func.check_kwargs({"x": "INPUT_BY_CALLER"}, has_caller=True)
    assert func.check_kwargs({"q": 1}, has_caller=True).unknown == ("q",)
    # a cron job: nobody adds anything
    problems = func.check_kwargs({"x": "FROM_PARAMETER"})
    assert problems.placeholders == ("x",) and problems.missing == ()
    assert func.check_kwargs({}).missing == ("x",)


def test_args_and_kwargs_spec_name_the_same_parameters() -> None:
    """``args`` is the list of ``kwargsSpec``'s names; the check reads ``kwargsSpec``."""
    func = Func.from_row({**func_row(), "args": ["x", "y", "legacy"]})
    assert func.check_kwargs({"x": 1, "legacy": 2}).unknown == ("legacy",)


def test_one_placeholder_list() -> None:
    assert {"INPUT_BY_CALLER", "FROM_PARAMETER"} == PLACEHOLDERS
    assert is_placeholder("INPUT_BY_CALLER") and not is_placeholder("input_by_caller")
    assert not is_placeholder(None)


# --- decorator options at publish -------------------------------------------------------------------
@pytest.mark.parametrize(("option", "value", "problem"), [
    ("timeout", 0, "must be a positive number"),
    ("api_timeout", True, "must be a positive number"),
    ("cache_result", "60", "must be a positive number"),
    ("retries", -1, "must be a non-negative integer"),
    ("retries", None, "must be an integer"),
    ("queue", "", "must be a queue name"),
    ("queue", 2.5, "must be a queue name"),
    ("tags", ["a", 1], "must be a list of strings"),
    ("delayed_crontab", [1, -2], "must be a list of non-negative integer seconds"),
    ("is_hidden", 1, "must be a boolean"),
    ("fixed_crontab", 5, "must be a string"),
])
def test_bad_decorator_options_are_named(option: str, value: object, problem: str) -> None:
    assert api_options.problem(option, value) == problem


@pytest.mark.parametrize(("option", "value"), [
    ("timeout", 1.5), ("expires", None), ("queue", 3), ("queue", "slow"), ("retries", 0),
    ("tags", ("a", "b")), ("delayed_cron_job", [0, 60]), ("is_hidden", False), ("title", "T"),
])
def test_good_decorator_options_pass(option: str, value: object) -> None:
    assert api_options.problem(option, value) is None


def test_durations_beyond_366_days_refuse_the_publish() -> None:
    api_options.check_range("f", "timeout", api_options.MAX_SECONDS)
    for value in (api_options.MAX_SECONDS + 1, float("inf"), float("nan")):
        with pytest.raises(ScriptError, match="out of range"):
            api_options.check_range("f", "expires", value)
    api_options.check_range("f", "retries", 10**9)  # not a duration


def test_decorator_options_are_normalised() -> None:
    warnings: list[str] = []
    assert api_options.normalised("f", "queue", 3, warnings) == "3" and "numbered queue" in warnings[0]
    assert api_options.normalised("f", "tags", ("a",), warnings) == ["a"]
    with pytest.raises(ScriptError, match="invalid fixed_cron_expr"):
        api_options.normalised("f", "fixed_cron_expr", "not cron", warnings)
    assert api_options.RULES["api_timeout"].key == "timeout"
    assert api_options.RULES["fixed_crontab"].key == "fixedCronExpr"


def test_publish_leaves_the_default_timeout_to_the_deployment() -> None:
    """No ``timeout=`` → ``null`` in the catalogue, so ``tasks.default_timeout`` applies."""
    code = ("@DFF.API('Plain')\ndef plain(x):\n    pass\n\n"
            "@DFF.API('Slow', timeout=90)\ndef slow():\n    pass\n")
    plain, slow = (Func.of(row) for row in scripts.analyse("demo__t", code).funcs)
    assert plain.options.timeout is None and slow.options.timeout == 90
    assert plain.options.effective_timeout(TasksSettings(default_timeout=7)) == 7
