-- 0005: console accounts (docs/security.md): users with a role and a scrypt password hash,
-- a role on admin tokens and access keys (existing ones stay admin), and the audit log of
-- mutating management calls (pruned by the Beat's janitor after accounts.audit_retention_days).
ALTER TABLE admin_tokens ADD COLUMN role VARCHAR(32) NOT NULL DEFAULT 'admin';
ALTER TABLE access_keys ADD COLUMN role VARCHAR(32) NOT NULL DEFAULT 'admin';
CREATE TABLE IF NOT EXISTS users (
    username VARCHAR(191) NOT NULL PRIMARY KEY,
    role VARCHAR(32) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created DOUBLE NOT NULL,
    last_sign_in DOUBLE NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    time DOUBLE NOT NULL,
    username VARCHAR(191) NOT NULL,
    via VARCHAR(32) NOT NULL,
    method VARCHAR(16) NOT NULL,
    route VARCHAR(191) NOT NULL,
    entity_id VARCHAR(191) NULL,
    status INTEGER NOT NULL
);
CREATE INDEX ix_audit_time ON audit (time);
CREATE INDEX ix_audit_username_id ON audit (username, id);
CREATE INDEX ix_audit_route_id ON audit (route, id);
