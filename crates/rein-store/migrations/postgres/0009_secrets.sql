-- Secrets for MCP upstreams (`rein_core::secret::StoredSecret`): API keys and database
-- passwords the gateway injects into an upstream's environment or headers. `doc` holds the value
-- sealed under the master key (XChaCha20-Poly1305, bound to the name and version), never the
-- plaintext. The one record kind that is deleted: deleting a secret removes its row, and with it
-- the ciphertext.

CREATE TABLE secrets (
    name    TEXT COLLATE "C" PRIMARY KEY,
    version BIGINT NOT NULL,
    doc     TEXT COLLATE "C" NOT NULL
);
