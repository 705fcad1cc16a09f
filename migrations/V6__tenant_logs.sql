-- The verifiable log's sequencing (issue 11; docs/verifiable-log.md): one append-only Merkle
-- log per tenant, in arrival order. In the transaction that stores a batch, just before it
-- commits, the writer locks the batch's tenants in `tenant_logs` (in sorted order, so two
-- writers never deadlock), gives each event it stored the next `log_index` of its tenant with
-- its RFC 6962 leaf hash (SHA-256 of 0x00 and the event's canonical stream record), and grows
-- `size`. Indexes are never skipped (a rolled-back batch takes its increments with it) and
-- never reused (the primary key). Events stay append-only: the log is a table of its own.
CREATE TABLE tenant_logs (
    tenant_id  text   PRIMARY KEY,
    size       bigint NOT NULL DEFAULT 0 CHECK (size >= 0)
);

CREATE TABLE log_entries (
    tenant_id    text        NOT NULL,
    log_index    bigint      NOT NULL CHECK (log_index >= 0),
    leaf_hash    bytea       NOT NULL CHECK (octet_length(leaf_hash) = 32),
    -- the event the leaf is: audit_events' key (tenant_id, event_id, occurred_at)
    event_id     text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    CONSTRAINT log_entries_pkey PRIMARY KEY (tenant_id, log_index)
);

CREATE TRIGGER log_entries_append_only
    BEFORE UPDATE OR DELETE ON log_entries
    FOR EACH ROW EXECUTE FUNCTION sentinel_refuse_change();
CREATE TRIGGER log_entries_no_truncate
    BEFORE TRUNCATE ON log_entries
    FOR EACH STATEMENT EXECUTE FUNCTION sentinel_refuse_change();

REVOKE ALL ON tenant_logs, log_entries FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON tenant_logs TO sentinel_writer;
GRANT INSERT ON log_entries TO sentinel_writer;
