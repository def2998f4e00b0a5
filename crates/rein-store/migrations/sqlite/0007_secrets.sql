-- Secrets for MCP upstreams (`rein_core::secret::StoredSecret`): API keys and database
-- passwords the gateway injects into an upstream's environment or headers. `doc` holds the value
-- sealed under the master key (XChaCha20-Poly1305, bound to the name and version), never the
-- plaintext. The one record kind that is deleted: deleting a secret removes its row, and with it
-- the ciphertext (the SQLite adapter runs with `secure_delete`, so freed pages are zeroed).

CREATE TABLE secrets (
    name    TEXT PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    doc     TEXT NOT NULL
);
