-- 0001: the initial schema.
-- Written in the subset SQLite and MySQL/MariaDB share; the MySQL dialect appends
-- ENGINE=InnoDB, utf8mb4 and a binary collation (ids compare and sort byte-wise on both
-- backends) to every CREATE TABLE. Statements end with a semicolon at the end of a line.

-- Generic entities: id + INDEXED columns (store/base.py) + the whole dict as JSON in `data`.
CREATE TABLE IF NOT EXISTS script_sets (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    data LONGTEXT NOT NULL,
    create_time DOUBLE NOT NULL,
    update_time DOUBLE NOT NULL
);
CREATE INDEX ix_script_sets_update_time ON script_sets (update_time);

CREATE TABLE IF NOT EXISTS scripts (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    script_set_id VARCHAR(191) NULL,
    data LONGTEXT NOT NULL,
    create_time DOUBLE NOT NULL,
    update_time DOUBLE NOT NULL
);
CREATE INDEX ix_scripts_script_set_id ON scripts (script_set_id);
CREATE INDEX ix_scripts_update_time ON scripts (update_time);

CREATE TABLE IF NOT EXISTS funcs (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    script_id VARCHAR(191) NULL,
    script_set_id VARCHAR(191) NULL,
    data LONGTEXT NOT NULL,
    create_time DOUBLE NOT NULL,
    update_time DOUBLE NOT NULL
);
CREATE INDEX ix_funcs_script_id ON funcs (script_id);
CREATE INDEX ix_funcs_script_set_id ON funcs (script_set_id);
CREATE INDEX ix_funcs_update_time ON funcs (update_time);

CREATE TABLE IF NOT EXISTS sync_apis (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    func_id VARCHAR(191) NULL,
    data LONGTEXT NOT NULL,
    create_time DOUBLE NOT NULL,
    update_time DOUBLE NOT NULL
);
CREATE INDEX ix_sync_apis_func_id ON sync_apis (func_id);
CREATE INDEX ix_sync_apis_update_time ON sync_apis (update_time);

CREATE TABLE IF NOT EXISTS async_apis (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    func_id VARCHAR(191) NULL,
    data LONGTEXT NOT NULL,
    create_time DOUBLE NOT NULL,
    update_time DOUBLE NOT NULL
);
CREATE INDEX ix_async_apis_func_id ON async_apis (func_id);
CREATE INDEX ix_async_apis_update_time ON async_apis (update_time);

CREATE TABLE IF NOT EXISTS cron_jobs (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    func_id VARCHAR(191) NULL,
    data LONGTEXT NOT NULL,
    create_time DOUBLE NOT NULL,
    update_time DOUBLE NOT NULL
);
CREATE INDEX ix_cron_jobs_func_id ON cron_jobs (func_id);
CREATE INDEX ix_cron_jobs_update_time ON cron_jobs (update_time);

CREATE TABLE IF NOT EXISTS env_variables (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    data LONGTEXT NOT NULL,
    create_time DOUBLE NOT NULL,
    update_time DOUBLE NOT NULL
);
CREATE INDEX ix_env_variables_update_time ON env_variables (update_time);

-- DFF.STORE: JSON values per (scope, key), expiry honoured on read.
CREATE TABLE IF NOT EXISTS func_store (
    scope VARCHAR(191) NOT NULL,
    store_key VARCHAR(191) NOT NULL,
    value_json LONGTEXT NOT NULL,
    expire_at DOUBLE NULL,
    update_time DOUBLE NOT NULL,
    PRIMARY KEY (scope, store_key)
);
CREATE INDEX ix_func_store_expire_at ON func_store (expire_at);

-- Task records: filter columns + the whole TaskResult dict in `data`.
CREATE TABLE IF NOT EXISTS task_records (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    func_id VARCHAR(191) NOT NULL,
    origin VARCHAR(32) NOT NULL,
    origin_id VARCHAR(191) NULL,
    status VARCHAR(32) NOT NULL,
    queue VARCHAR(191) NOT NULL,
    attempt INTEGER NOT NULL,
    trigger_time DOUBLE NOT NULL,
    start_time DOUBLE NULL,
    end_time DOUBLE NULL,
    data LONGTEXT NOT NULL
);
CREATE INDEX ix_task_records_time ON task_records (trigger_time, id);
CREATE INDEX ix_task_records_func_id ON task_records (func_id, trigger_time, id);
CREATE INDEX ix_task_records_origin_id ON task_records (origin_id, trigger_time, id);
CREATE INDEX ix_task_records_status ON task_records (status, trigger_time, id);
CREATE INDEX ix_task_records_origin ON task_records (origin, trigger_time);
CREATE INDEX ix_task_records_queue ON task_records (queue, trigger_time);

-- Beat: one row per claimed cron fire; the primary key makes a claim race-safe.
CREATE TABLE IF NOT EXISTS cron_fires (
    cron_id VARCHAR(191) NOT NULL,
    fire_ms BIGINT NOT NULL,
    task_id VARCHAR(191) NOT NULL,
    created DOUBLE NOT NULL,
    PRIMARY KEY (cron_id, fire_ms)
);
CREATE INDEX ix_cron_fires_fire_ms ON cron_fires (fire_ms);

CREATE TABLE IF NOT EXISTS admin_tokens (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    token_hash VARCHAR(191) NOT NULL,
    name VARCHAR(191) NOT NULL,
    created DOUBLE NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX ux_admin_tokens_token_hash ON admin_tokens (token_hash);

CREATE TABLE IF NOT EXISTS access_keys (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    secret_encrypted TEXT NOT NULL,
    name VARCHAR(191) NOT NULL,
    created DOUBLE NOT NULL
);
