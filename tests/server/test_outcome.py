"""The sync answer of a ``DFF.RESP``: ``allow_304`` (an ETag of the body; a matching
``If-None-Match`` is answered with 304) and ``download`` (Content-Disposition)."""

from __future__ import annotations

from fluxfunc_common.envelope import HttpResponse, TaskResult, TaskStatus
from fluxfunc_server.outcome import success_response


def _result(**resp: object) -> TaskResult:
    return TaskResult(id="t1", func_id="demo__a.f", status=TaskStatus.SUCCESS,
                      response=HttpResponse.model_validate({"data": {"a": 1}, **resp}))


def test_allow_304_answers_a_matching_if_none_match() -> None:
    first = success_response(_result(allow304=True))
    etag = first.headers["ETag"]
    assert first.status == 200 and etag.startswith('"') and first.body == b'{"a":1}'
    again = success_response(_result(allow304=True), if_none_match=f'W/"x", {etag}')
    assert again.status == 304 and again.headers["ETag"] == etag and not again.body
    other = success_response(_result(allow304=True), if_none_match='"other"')
    assert other.status == 200
    plain = success_response(_result(), if_none_match=etag)
    assert plain.status == 200 and "ETag" not in plain.headers


def test_download_names_the_attachment() -> None:
    named = success_response(_result(download="report.json"))
    assert named.headers["Content-Disposition"].startswith('attachment; filename="report.json"')
    default = success_response(_result(download=True))
    assert 'filename="api-resp.json"' in default.headers["Content-Disposition"]
    text = success_response(TaskResult(id="t1", func_id="demo__a.f", status=TaskStatus.SUCCESS,
                                       response=HttpResponse(data="hi", download=True)))
    assert 'filename="api-resp.txt"' in text.headers["Content-Disposition"]
    assert "Content-Disposition" not in success_response(_result()).headers
