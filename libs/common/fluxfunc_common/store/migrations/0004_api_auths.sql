-- 0004: reusable API auth definitions (docs/http-api.md, "API auth"), referenced by sync and
-- async APIs through `apiAuthId`. Secrets in `data` are sealed with the deployment secret.
CREATE TABLE IF NOT EXISTS api_auths (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    data LONGTEXT NOT NULL,
    create_time DOUBLE NOT NULL,
    update_time DOUBLE NOT NULL
);
CREATE INDEX ix_api_auths_update_time ON api_auths (update_time);
