-- The archive stays verifiable (issue 11; docs/verifiable-log.md, "The archive"). Each
-- month's Parquet rows carry their event's `log_index` and `leaf_hash`, so the archiver
-- reads the log beside the rows, and names in each month's manifest the checkpoint that
-- covers every tenant's leaves (so it reads the checkpoints too).
--
-- Every manifest the archiver writes is signed (KMS, a key of its own) as a signed note
-- that names the manifest's SHA-256 and the SHA-256 of the note signed before it: one chain
-- over every manifest ever written, as CloudTrail chains its digest files. The notes are
-- kept here, append-only, and in S3 (`manifests/<seq>.note`), so that deleting one from
-- either store is visible; `seq` is the chain's order, with no gaps.
CREATE TABLE archive_manifests (
    seq             bigint      PRIMARY KEY CHECK (seq >= 0),
    month           date        NOT NULL CHECK (extract(day FROM month) = 1),
    manifest_sha256 bytea       NOT NULL CHECK (octet_length(manifest_sha256) = 32),
    signed_at       timestamptz NOT NULL,
    -- the signed note exactly as signed and as written to S3
    note            text        NOT NULL
);

CREATE TRIGGER archive_manifests_append_only
    BEFORE UPDATE OR DELETE ON archive_manifests
    FOR EACH ROW EXECUTE FUNCTION sentinel_refuse_change();
CREATE TRIGGER archive_manifests_no_truncate
    BEFORE TRUNCATE ON archive_manifests
    FOR EACH STATEMENT EXECUTE FUNCTION sentinel_refuse_change();

REVOKE ALL ON archive_manifests FROM PUBLIC;
GRANT SELECT, INSERT ON archive_manifests TO sentinel_archiver;
GRANT SELECT ON archive_manifests TO sentinel_auditor;

-- The archiver reads every tenant's log entries (to export them with the rows) and
-- checkpoints (to name the covering one); it writes neither.
GRANT SELECT ON log_entries, checkpoints TO sentinel_archiver;
CREATE POLICY archiver_reads_every_tenant ON log_entries FOR SELECT
    TO sentinel_archiver USING (true);
CREATE POLICY archiver_reads_every_tenant ON checkpoints FOR SELECT
    TO sentinel_archiver USING (true);
