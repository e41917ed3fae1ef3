"""DataFlux Func's ``?`` placeholders bound through the driver: values never enter the SQL."""

from __future__ import annotations

import pytest

from fluxfunc_worker.dffconn.sqlparams import SqlParamError, bind, mysql_ident, postgresql_ident


def test_values_become_driver_parameters() -> None:
    assert bind("SELECT * FROM t WHERE name = ?", ["x' OR '1'='1"], mysql_ident) == (
        "SELECT * FROM t WHERE name = %s", ["x' OR '1'='1"])
    assert bind("SELECT ? + ?", (1, 2), mysql_ident) == ("SELECT %s + %s", [1, 2])
    assert bind("SELECT ?", "one", mysql_ident) == ("SELECT %s", ["one"])


def test_lists_dicts_and_identifiers() -> None:
    assert bind("WHERE a IN (?)", [[1, 2, 3]], mysql_ident) == ("WHERE a IN (%s, %s, %s)", [1, 2, 3])
    assert bind("VALUES ?", [[[1, "a"], [2, "b"]]], mysql_ident) == (
        "VALUES (%s, %s), (%s, %s)", [1, "a", 2, "b"])
    assert bind("UPDATE t SET ? WHERE id = ?", [{"a": 1, "b`c": None}, 7], mysql_ident) == (
        "UPDATE t SET `a` = %s, `b``c` = %s WHERE id = %s", [1, None, 7])
    assert bind("SELECT * FROM ??", ['we"ird'], postgresql_ident) == ('SELECT * FROM "we""ird"', [])


def test_quoted_text_and_percent_signs() -> None:
    sql = "SELECT '?', \"it''s ?\", `?`, 'a\\'?' FROM t WHERE a LIKE '10%' AND b = ? AND c % 2 = 0"
    assert bind(sql, [5], mysql_ident) == (
        "SELECT '?', \"it''s ?\", `?`, 'a\\'?' FROM t WHERE a LIKE '10%%' AND b = %s AND c %% 2 = 0", [5])


def test_without_parameters_the_sql_is_untouched() -> None:
    assert bind("SELECT '50%' WHERE a = ?", None, mysql_ident) == ("SELECT '50%' WHERE a = ?", None)
    assert bind("SELECT 1", [], mysql_ident) == ("SELECT 1", None)


def test_count_mismatch_is_an_error() -> None:
    with pytest.raises(SqlParamError, match="more `\\?`"):
        bind("SELECT ?, ?", [1], mysql_ident)
    with pytest.raises(SqlParamError, match="2 sql_params for 1"):
        bind("SELECT ?", [1, 2], mysql_ident)
