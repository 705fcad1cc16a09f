-- Sentinel's write-path schema: the partitioned event table, the client idempotency keys,
-- the reject store for poison records, and the rules that keep events append-only.

-- Roles are cluster-wide; several databases (tests, environments) may create them at once.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['sentinel_writer', 'sentinel_reader', 'sentinel_archiver'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

CREATE TABLE audit_events (
    id             text        NOT NULL,
    tenant_id      text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    received_at    timestamptz NOT NULL,
    stored_at      timestamptz NOT NULL DEFAULT now(),
    actor_id       text        NOT NULL,
    actor_type     text,
    action         text        NOT NULL,
    resource_type  text        NOT NULL,
    resource_id    text        NOT NULL,
    changes        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT audit_events_pkey PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);

COMMENT ON TABLE audit_events IS
    'Append-only audit events, one partition per calendar month [first day, first day of next month) UTC.';

-- Serve the query contract's filters; every query is tenant-scoped and time-ordered.
CREATE INDEX audit_events_tenant_time_idx     ON audit_events (tenant_id, occurred_at, id);
CREATE INDEX audit_events_actor_idx           ON audit_events (tenant_id, actor_id, occurred_at, id);
CREATE INDEX audit_events_resource_idx        ON audit_events (tenant_id, resource_type, resource_id, occurred_at, id);
CREATE INDEX audit_events_action_idx          ON audit_events (tenant_id, action, occurred_at, id);
CREATE INDEX audit_events_changes_idx         ON audit_events USING gin (changes jsonb_path_ops);

-- Client ids seen recently: the same client id posted again within 24 hours is stored once,
-- even when its retry carries a different (defaulted) occurred_at.
CREATE TABLE event_ids (
    id                 text        PRIMARY KEY,
    occurred_at        timestamptz NOT NULL,
    first_seen_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_ids_first_seen_at_idx ON event_ids (first_seen_at);

-- Poison records: kept with their raw bytes and the reason, never blocking a shard.
CREATE TABLE rejected_records (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source           text        NOT NULL,
    record_key       text        NOT NULL,
    reason           text        NOT NULL,
    payload          bytea       NOT NULL,
    rejected_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rejected_records_source_key UNIQUE (source, record_key)
);

-- Events are append-only: these fire for every role, superusers included.
CREATE FUNCTION sentinel_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION sentinel_refuse_change();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION sentinel_refuse_change();

-- Creates the month partition holding `at` if it is missing, and returns its name.
-- SECURITY DEFINER lets the writer add a month without owning the table.
CREATE FUNCTION sentinel_ensure_month_partition(at timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    month_start timestamp := date_trunc('month', at AT TIME ZONE 'UTC');
    partition_name text := 'audit_events_' || to_char(month_start, 'YYYY_MM');
BEGIN
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN partition_name;
    END IF;
    BEGIN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
            partition_name,
            to_char(month_start, 'YYYY-MM-DD') || ' 00:00:00+00',
            to_char(month_start + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00');
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION sentinel_refuse_change()',
            partition_name || '_no_truncate', partition_name);
    EXCEPTION WHEN duplicate_table OR unique_violation THEN
        -- Another writer created it first.
        NULL;
    END;
    RETURN partition_name;
END
$$;

REVOKE ALL ON FUNCTION sentinel_ensure_month_partition(timestamptz) FROM PUBLIC;
REVOKE ALL ON audit_events, event_ids, rejected_records FROM PUBLIC;

GRANT SELECT, INSERT ON audit_events TO sentinel_writer;
GRANT SELECT, INSERT, DELETE ON event_ids TO sentinel_writer;
GRANT SELECT, INSERT ON rejected_records TO sentinel_writer;
GRANT EXECUTE ON FUNCTION sentinel_ensure_month_partition(timestamptz) TO sentinel_writer;

GRANT SELECT ON audit_events, rejected_records TO sentinel_reader;

GRANT SELECT ON audit_events TO sentinel_archiver;
GRANT EXECUTE ON FUNCTION sentinel_ensure_month_partition(timestamptz) TO sentinel_writer, sentinel_archiver;
