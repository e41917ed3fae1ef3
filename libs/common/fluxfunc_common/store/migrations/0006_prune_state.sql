-- 0006: where the janitor's task record pruning stands (docs/scaling.md): the start and the
-- rule of its last complete round and the position of a sweep over the originId index, so a
-- restarted Beat or a new leader carries on instead of counting every originId again.
CREATE TABLE IF NOT EXISTS prune_state (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    data LONGTEXT NOT NULL,
    update_time DOUBLE NOT NULL
);
