"""Publishing scripts (:class:`~fluxfunc_common.store.base.PublishStore`): a script's published
code and its funcs replaced in one transaction; the Worker reads the published code back."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from fluxfunc_common.errors import Conflict
from fluxfunc_common.store.entities import insert_row, insert_sql, locked, rewrite
from fluxfunc_common.store.sql import Session, SqlPart, loads
from fluxfunc_common.store.types import Entity


class SqlPublish(SqlPart):
    """``publish_script`` (all or nothing) and ``published_code``."""

    async def publish_script(
        self,
        script_id: str,
        code: str,
        funcs: Sequence[Mapping[str, object]],
        *,
        draft: Mapping[str, object] | None = None,
        create: Mapping[str, object] | None = None,
    ) -> dict[str, object]:
        now = self.clock.time()
        try:
            async with self.db.transaction() as s:
                script = await self._draft_locked(s, script_id, draft or {}, create, now)
                script.pop("codeMd5", None)  # written by earlier releases; codeMD5 is the name
                script.update(
                    publishedCode=code,
                    codeMD5=hashlib.md5(code.encode()).hexdigest(),
                    publishVersion=_version(script) + 1,
                    publishTime=now,
                    updateTime=now,
                )
                await rewrite(s, Entity.SCRIPT, script)
                await s.execute("DELETE FROM funcs WHERE script_id = ?", (script_id,))
                rows = [insert_row(Entity.FUNC, _func(script, f, now)) for f in funcs]
                if rows:
                    await s.executemany(insert_sql(Entity.FUNC), rows)
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                raise Conflict(f"a func of script {script_id!r} already exists elsewhere") from None
            raise
        return script

    async def _draft_locked(
        self, s: Session, script_id: str, draft: Mapping[str, object],
        create: Mapping[str, object] | None, now: float,
    ) -> dict[str, object]:
        """The script row locked for a publish, with ``draft`` applied; inserted from ``create``
        first when it does not exist and ``create`` is given."""
        for_update = self.dialect.for_update
        if create is not None:
            sql = f"SELECT 1 FROM {Entity.SCRIPT.value} WHERE id = ?{for_update}"
            if not await s.fetchall(sql, (script_id,)):
                row = {**create, "id": script_id, "createTime": now, "updateTime": now}
                await s.execute(insert_sql(Entity.SCRIPT), insert_row(Entity.SCRIPT, row))
        script = await locked(s, for_update, Entity.SCRIPT, script_id)
        script.update({k: v for k, v in draft.items() if k not in ("id", "createTime")})
        return script

    async def published_code(self, script_id: str) -> tuple[str, int] | None:
        async with self.db.session() as s:
            rows = await s.fetchall(f"SELECT data FROM {Entity.SCRIPT.value} WHERE id = ?",
                                    (script_id,))
        script: dict[str, object] | None = loads(rows[0][0]) if rows else None
        if not script or script.get("publishedCode") is None:
            return None
        return str(script["publishedCode"]), _version(script)


def _version(script: Mapping[str, object]) -> int:
    """The script's publishVersion (0 before its first publish)."""
    version = script.get("publishVersion")
    return int(version) if isinstance(version, (int, float, str)) and version else 0


def _func(script: Mapping[str, object], func: Mapping[str, object], now: float) -> dict[str, object]:
    return {"scriptId": script["id"], "scriptSetId": script.get("scriptSetId"), **func,
            "createTime": now, "updateTime": now}
