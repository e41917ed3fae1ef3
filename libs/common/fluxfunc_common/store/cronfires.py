"""The Beat's fire claims (:class:`~fluxfunc_common.store.base.CronFireStore`): the
``cron_fires`` table, unique on (cron_id, fire_ms), so each fire is enqueued once however many
deployments share the database; and the janitor's clearing of cron jobs' expired overrides."""

from __future__ import annotations

from collections.abc import Sequence

from fluxfunc_common.store.sql import SqlPart

Claim = tuple[str, int, str]  # (cron_id, fire_ms, task_id)

_CLAIM_VARIABLES = 990  # distinct cron ids + fire times per claim chunk (old SQLite allows 999)


def claim_chunks(claims: list[Claim]) -> list[list[Claim]]:
    """Split claims so each chunk's read-back SELECT stays under the variable limit."""
    chunks: list[list[Claim]] = []
    crons: set[str] = set()
    times: set[int] = set()
    for claim in claims:
        grows = (claim[0] not in crons) + (claim[1] not in times)
        if not chunks or len(crons) + len(times) + grows > _CLAIM_VARIABLES:
            chunks.append([])
            crons, times = set(), set()
        chunks[-1].append(claim)
        crons.add(claim[0])
        times.add(claim[1])
    return chunks


class SqlCronFires(SqlPart):
    """Claiming fires (one or a batch) and pruning old claims."""

    async def claim_cron_fire(self, cron_id: str, fire_ms: int, task_id: str) -> bool:
        sql = "INSERT INTO cron_fires (cron_id, fire_ms, task_id, created) VALUES (?, ?, ?, ?)"
        try:
            async with self.db.session() as s:
                await s.execute(sql, (cron_id, int(fire_ms), task_id, self.clock.time()))
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                return False
            raise
        return True

    async def claim_cron_fires(self, claims: Sequence[Claim]) -> list[bool]:
        """One INSERT-or-ignore per chunk; only when some row already existed, a SELECT of who
        holds each (cron_id, fire_ms) of that chunk."""
        out: list[bool] = []
        insert = self.dialect.insert_ignore("cron_fires", ("cron_id", "fire_ms", "task_id", "created"))
        now = self.clock.time()
        for chunk in claim_chunks([(str(c), int(m), str(t)) for c, m, t in claims]):
            async with self.db.transaction() as s:
                inserted = await s.executemany(insert, [(c, m, t, now) for c, m, t in chunk])
                if inserted == len(chunk):
                    out += [True] * len(chunk)
                    continue
                crons = sorted({c for c, _, _ in chunk})
                times = sorted({m for _, m, _ in chunk})
                rows = await s.fetchall(
                    f"SELECT cron_id, fire_ms, task_id FROM cron_fires WHERE fire_ms IN "
                    f"({', '.join('?' * len(times))}) AND cron_id IN ({', '.join('?' * len(crons))})",
                    [*times, *crons])
            holder = {(str(r[0]), int(r[1])): str(r[2]) for r in rows}
            out += [holder.get((c, m)) == t for c, m, t in chunk]
        return out

    async def prune_cron_fires(self, older_than_ms: int, *, keep_latest: bool = False) -> int:
        sql = "DELETE FROM cron_fires WHERE fire_ms < ?"
        if keep_latest:
            # the derived table is materialised first (MySQL refuses a subquery on the target)
            sql += (" AND (cron_id, fire_ms) NOT IN (SELECT cron_id, newest FROM "
                    "(SELECT cron_id, MAX(fire_ms) AS newest FROM cron_fires GROUP BY cron_id) AS latest)")
        async with self.db.session() as s:
            return await s.execute(sql, (int(older_than_ms),))

    async def clear_expired_cron_overrides(self, expired_before: float, *, limit: int) -> int:
        # An expiry written as text (not a number) is left alone: it never looks expired here.
        override = f"{self.dialect.json_number('data', 'dynamicCronExprExpireTime')} < ?"
        pause = f"{self.dialect.json_number('data', 'pauseExpireTime')} < ?"
        both = "'$.dynamicCronExpr', '$.dynamicCronExprExpireTime', '$.pauseExpireTime'"
        sql = (f"UPDATE cron_jobs SET data = CASE "
               f"WHEN {override} AND {pause} THEN JSON_REMOVE(data, {both}) "
               f"WHEN {override} THEN JSON_REMOVE(data, '$.dynamicCronExpr', '$.dynamicCronExprExpireTime') "
               f"ELSE JSON_REMOVE(data, '$.pauseExpireTime') END "
               # the derived table is materialised first (MySQL refuses LIMIT in IN, and a
               # subquery on the target table)
               f"WHERE id IN (SELECT id FROM (SELECT id FROM cron_jobs WHERE {override} OR {pause} "
               f"LIMIT {int(limit)}) AS expired)")
        async with self.db.session() as s:
            return await s.execute(sql, [expired_before] * sql.count("?"))
