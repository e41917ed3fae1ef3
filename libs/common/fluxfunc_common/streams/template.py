"""Stream bodies rendered from one envelope for many tasks (a cron job's fires)."""

from __future__ import annotations

import orjson

from fluxfunc_common.envelope import TaskEnvelope
from fluxfunc_common.streams.entries import header, result_ttl_ms


class EnvelopeTemplate:
    """Stream bodies for many envelopes that differ from ``env`` only in id, trigger time and
    deadline (a cron job's fires): the envelope JSON and the ``enq`` header JSON, as
    ``enqueue`` writes them, without building and serialising a model per envelope. For a
    script that enqueues by itself (the Beat's ``cron_fire.lua``)."""

    def __init__(self, env: TaskEnvelope) -> None:
        self.envelope = env
        self._body = env.model_dump(by_alias=True, mode="json")
        self._header = orjson.loads(header(env))
        self.result_ttl_ms = result_ttl_ms(env)

    def render(self, task_id: str, trigger_time: float, expires: float | None) -> tuple[bytes, bytes]:
        """(envelope JSON, header JSON) of one envelope."""
        body = {**self._body, "id": task_id, "triggerTime": trigger_time, "expires": expires}
        head = {**self._header, "id": task_id, "triggerTime": trigger_time}
        return orjson.dumps(body), orjson.dumps(head)

    def envelope_for(self, task_id: str, trigger_time: float, expires: float | None) -> TaskEnvelope:
        """The same envelope as a model (for the rare fire that needs one)."""
        return self.envelope.model_copy(update={"id": task_id, "trigger_time": trigger_time,
                                                "expires": expires})
