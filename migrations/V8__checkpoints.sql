-- The verifiable log's checkpoints (issue 11; docs/verifiable-log.md). Each minute the
-- checkpointer extends every tenant's tree that grew from the leaves in `log_entries`, keeps
-- the tree's right edge in `log_heads`, stores the hash of every perfect subtree it completes
-- at levels 4, 8, 12, … in `log_subtrees` (so a proof reads O(log n) rows, never the leaves:
-- a subtree between those levels is folded from at most 8 stored ones), and signs a C2SP
-- checkpoint in KMS, kept here and in S3. Subtrees and checkpoints are append-only; the head
-- is the checkpointer's working state, recomputable from the leaves, and trusted by nothing
-- (`sentinel verify` recomputes every hash from the events).

-- `GET /events/{id}/proof` finds an event's leaf by its id.
CREATE INDEX log_entries_event ON log_entries (tenant_id, event_id);

CREATE TABLE log_heads (
    tenant_id  text   PRIMARY KEY,
    size       bigint NOT NULL CHECK (size >= 0),
    -- the right edge: the hashes of the perfect subtrees partitioning the tree, largest first
    frontier   bytea  NOT NULL CHECK (octet_length(frontier) % 32 = 0)
);

CREATE TABLE log_subtrees (
    tenant_id  text     NOT NULL,
    level      smallint NOT NULL CHECK (level > 0 AND level < 64 AND level % 4 = 0),
    idx        bigint   NOT NULL CHECK (idx >= 0),
    hash       bytea    NOT NULL CHECK (octet_length(hash) = 32),
    CONSTRAINT log_subtrees_pkey PRIMARY KEY (tenant_id, level, idx)
);

CREATE TABLE checkpoints (
    tenant_id  text        NOT NULL,
    tree_size  bigint      NOT NULL CHECK (tree_size >= 0),
    root_hash  bytea       NOT NULL CHECK (octet_length(root_hash) = 32),
    signed_at  timestamptz NOT NULL,
    -- the signed note exactly as signed and as written to S3
    note       text        NOT NULL,
    CONSTRAINT checkpoints_pkey PRIMARY KEY (tenant_id, signed_at)
);
CREATE INDEX checkpoints_latest ON checkpoints (tenant_id, tree_size DESC, signed_at DESC);

CREATE TRIGGER log_subtrees_append_only
    BEFORE UPDATE OR DELETE ON log_subtrees
    FOR EACH ROW EXECUTE FUNCTION sentinel_refuse_change();
CREATE TRIGGER log_subtrees_no_truncate
    BEFORE TRUNCATE ON log_subtrees
    FOR EACH STATEMENT EXECUTE FUNCTION sentinel_refuse_change();
CREATE TRIGGER checkpoints_append_only
    BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION sentinel_refuse_change();
CREATE TRIGGER checkpoints_no_truncate
    BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION sentinel_refuse_change();

-- The checkpointer: reads the logs, extends its heads, appends subtrees and checkpoints.
-- The auditor: `sentinel verify`, read-only, every tenant (it names one per run).
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['sentinel_checkpointer', 'sentinel_auditor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON log_heads, log_subtrees, checkpoints FROM PUBLIC;
GRANT SELECT ON tenant_logs, log_entries TO sentinel_checkpointer;
GRANT SELECT, INSERT, UPDATE ON log_heads TO sentinel_checkpointer;
GRANT SELECT, INSERT ON log_subtrees, checkpoints TO sentinel_checkpointer;

GRANT SELECT ON audit_events, tenant_logs, log_entries, log_subtrees, checkpoints,
    archive_months TO sentinel_auditor;
CREATE POLICY auditor_reads_every_tenant ON audit_events
    FOR SELECT TO sentinel_auditor
    USING (true);

-- The query API proves inclusion and consistency for the tenant its transaction names, as it
-- reads events (V4): the same rule, on the log's tables.
GRANT SELECT ON log_entries, log_subtrees, checkpoints TO sentinel_reader;
ALTER TABLE log_entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE log_subtrees ENABLE ROW LEVEL SECURITY;
ALTER TABLE checkpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY reader_sees_its_tenant ON log_entries FOR SELECT TO sentinel_reader
    USING (tenant_id = current_setting('sentinel.tenant_id', true));
CREATE POLICY reader_sees_its_tenant ON log_subtrees FOR SELECT TO sentinel_reader
    USING (tenant_id = current_setting('sentinel.tenant_id', true));
CREATE POLICY reader_sees_its_tenant ON checkpoints FOR SELECT TO sentinel_reader
    USING (tenant_id = current_setting('sentinel.tenant_id', true));
CREATE POLICY others_see_every_tenant ON log_entries FOR ALL
    TO sentinel_writer, sentinel_checkpointer, sentinel_auditor USING (true) WITH CHECK (true);
CREATE POLICY others_see_every_tenant ON log_subtrees FOR ALL
    TO sentinel_checkpointer, sentinel_auditor USING (true) WITH CHECK (true);
CREATE POLICY others_see_every_tenant ON checkpoints FOR ALL
    TO sentinel_checkpointer, sentinel_auditor USING (true) WITH CHECK (true);
