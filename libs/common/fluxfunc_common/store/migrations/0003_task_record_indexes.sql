-- 0003: task records stay fast at millions of rows (docs/store-schema.md, docs/scaling.md).
-- Every index the list API filters by ends in (trigger_time, id): filter + newest-first order +
-- keyset cursor is one index range. `write_time` (when the row was last written, epoch s) lets
-- the janitor look only at originIds written since its last round.
ALTER TABLE task_records ADD COLUMN write_time DOUBLE NULL;
DROP INDEX ix_task_records_origin ON task_records;
DROP INDEX ix_task_records_queue ON task_records;
CREATE INDEX ix_task_records_origin ON task_records (origin, trigger_time, id);
CREATE INDEX ix_task_records_queue ON task_records (queue, trigger_time, id);
CREATE INDEX ix_task_records_func_status ON task_records (func_id, status, trigger_time, id);
CREATE INDEX ix_task_records_origin_status ON task_records (origin, status, trigger_time, id);
CREATE INDEX ix_task_records_write_time ON task_records (write_time, origin_id);
