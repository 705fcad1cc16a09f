-- Tenant isolation in the database itself (issue 10): the reader role sees only the rows of
-- the tenant its transaction names in `sentinel.tenant_id` (SET LOCAL, or set_config(…, true)),
-- so even a query built wrongly cannot return another tenant's events. With no tenant set it
-- sees nothing. The writer and the archiver work across tenants and keep what they need.
-- Partitions carry no grants of their own: every role reads through audit_events, where the
-- policies apply. The table owner (migrations, the guarded archive functions) bypasses them.

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;

CREATE POLICY reader_sees_its_tenant ON audit_events
    FOR SELECT TO sentinel_reader
    USING (tenant_id = current_setting('sentinel.tenant_id', true));

CREATE POLICY writer_appends ON audit_events
    FOR INSERT TO sentinel_writer
    WITH CHECK (true);

-- The writer's INSERT … ON CONFLICT reads the unique key it conflicts on.
CREATE POLICY writer_reads_for_conflicts ON audit_events
    FOR SELECT TO sentinel_writer
    USING (true);

CREATE POLICY archiver_exports_every_tenant ON audit_events
    FOR SELECT TO sentinel_archiver
    USING (true);

-- Quarantined raw payloads may hold anything a client sent, for any tenant: operators read
-- them as the table owner, never through the query API's role.
REVOKE SELECT ON rejected_records FROM sentinel_reader;
