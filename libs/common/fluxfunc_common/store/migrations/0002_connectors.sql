-- 0002: connectors (DFF.CONN, docs/connectors.md). The whole connector as JSON in `data`;
-- secrets inside its config are ciphertext (`passwordCipher`, …), never plain text.
CREATE TABLE IF NOT EXISTS connectors (
    id VARCHAR(191) NOT NULL PRIMARY KEY,
    type VARCHAR(64) NOT NULL,
    data LONGTEXT NOT NULL,
    create_time DOUBLE NOT NULL,
    update_time DOUBLE NOT NULL
);
CREATE INDEX ix_connectors_update_time ON connectors (update_time);
