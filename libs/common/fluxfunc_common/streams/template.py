"""Stream bodies rendered from one envelope for many tasks (a cron job's fires)."""

from __future__ import annotations

import secrets

import orjson

from fluxfunc_common.envelope import TaskEnvelope
from fluxfunc_common.streams.entries import header, result_ttl_ms


class EnvelopeTemplate:
    """Stream bodies for many envelopes that differ from ``env`` only in id, trigger time and
    deadline (a cron job's fires): the envelope JSON and the ``enq`` header JSON, as
    ``enqueue`` writes them, without building and serialising a model per envelope. For a
    script that enqueues by itself (the Beat's ``cron_fire.lua``).

    Both documents are kept serialised, with a marker (a JSON string unique to the template)
    where each per-task value goes; a render replaces the markers (a few ``bytes.replace``
    in C: the same bytes as serialising the whole dict again). A Beat keeps one template per
    job, so the template is small: no model, no dicts."""

    __slots__ = ("_body", "_head", "_marks", "queue", "result_ttl_ms")

    def __init__(self, env: TaskEnvelope) -> None:
        self.queue = env.queue
        self.result_ttl_ms = result_ttl_ms(env)
        tag = secrets.token_hex(8)
        marks = {name: f"@fluxfunc-{tag}-{name}@" for name in ("id", "triggerTime", "expires")}
        body = {**env.model_dump(by_alias=True, mode="json"), **marks}
        head = {**orjson.loads(header(env)), "id": marks["id"], "triggerTime": marks["triggerTime"]}
        # exact-size copies: orjson's own bytes keep a few KiB of spare capacity each
        self._body, self._head = _exact(orjson.dumps(body)), _exact(orjson.dumps(head))
        self._marks = tuple(_exact(orjson.dumps(mark)) for mark in marks.values())  # id, trigger, expires

    def render(self, task_id: str, trigger_time: float, expires: float | None) -> tuple[bytes, bytes]:
        """(envelope JSON, header JSON) of one envelope."""
        mid, mtrigger, mexpires = self._marks
        tid, trigger = b'"' + task_id.encode() + b'"', _number(trigger_time)
        body = self._body.replace(mid, tid).replace(mtrigger, trigger)
        body = body.replace(mexpires, b"null" if expires is None else _number(expires))
        return body, self._head.replace(mid, tid).replace(mtrigger, trigger)

    def envelope_for(self, task_id: str, trigger_time: float, expires: float | None) -> TaskEnvelope:
        """The same envelope as a model (for the rare fire that needs one)."""
        return TaskEnvelope.model_validate_json(self.render(task_id, trigger_time, expires)[0])


def _number(value: float) -> bytes:
    """A JSON number as orjson writes it (an epoch time: the shortest round-trip repr)."""
    text = repr(float(value))
    return text.encode() if "e" not in text and text not in ("inf", "-inf", "nan") else orjson.dumps(value)


def _exact(data: bytes) -> bytes:
    return bytes(memoryview(data))
