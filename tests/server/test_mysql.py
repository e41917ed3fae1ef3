"""The management and invocation flows most sensitive to the database, on MariaDB/MySQL: the
same test functions as for SQLite, collected here again with the store on a fresh MariaDB
database (``mysql_url``; never skipped when CI=true)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.server.test_invoke_sync import test_normal_post_returns_bare_value as _normal_post
from tests.server.test_manage import (
    test_api_entries_crud,
    test_cron_jobs,
    test_password_env_variables_are_sealed,
    test_publish_extracts_funcs_and_notifies,
    test_scripts_paging_and_filters,
    test_task_records_filters_and_paging,
)
from tests.server.test_tasks import test_task_record_is_the_fallback

from fluxfunc_common.settings import Settings

pytestmark = pytest.mark.mysql

# its module marks every test with the published demo script; here only this one needs it
test_normal_post_returns_bare_value = pytest.mark.usefixtures("published")(_normal_post)

__all__ = [
    "test_api_entries_crud",
    "test_cron_jobs",
    "test_normal_post_returns_bare_value",
    "test_password_env_variables_are_sealed",
    "test_publish_extracts_funcs_and_notifies",
    "test_scripts_paging_and_filters",
    "test_task_record_is_the_fallback",
    "test_task_records_filters_and_paging",
]


@pytest.fixture
def server_settings(make_settings: Callable[..., Settings], mysql_url: str) -> Settings:
    return make_settings(store={"url": mysql_url}, tasks={"result_ttl": 600})
