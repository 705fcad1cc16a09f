-- The archiver: each month's progress from export to drop, and the only path by which a
-- month partition leaves audit_events.
--
-- States, in order: exporting -> exported -> verified -> detached -> dropped.
--   exporting  parts are being written to S3 (partial or stray objects may exist)
--   exported   parts and _manifest.json are in S3; `manifest` records what was written
--   verified   the objects were read back and matched the manifest and PostgreSQL
--   detached   the partition was counted under lock and detached from audit_events
--   dropped    the partition is gone; S3 holds the month
-- A failed verification, or rows that arrived after the export, send a month from exported
-- or verified back to exporting. Late events for a dropped month start a new batch
-- (dropped -> exporting, batch + 1), written as further parts beside the first ones.
CREATE TABLE archive_months (
    month       date        PRIMARY KEY CHECK (month = date_trunc('month', month)::date),
    state       text        NOT NULL CHECK (state IN ('exporting', 'exported', 'verified', 'detached', 'dropped')),
    -- 1 for the month's first export, one more per batch of late events
    batch       integer     NOT NULL DEFAULT 1 CHECK (batch >= 1),
    -- parts before this index belong to earlier, finished batches
    first_part  integer     NOT NULL DEFAULT 0 CHECK (first_part >= 0),
    -- rows the current batch exported: what the partition must still hold when it is detached
    batch_rows  bigint      CHECK (batch_rows >= 0),
    -- rows and Parquet bytes the month's manifest lists, all batches together
    rows        bigint      NOT NULL DEFAULT 0 CHECK (rows >= 0),
    bytes       bigint      NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    manifest    jsonb,
    -- why the last attempt failed, if it did
    error       text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT archive_months_exported_has_manifest
        CHECK (state = 'exporting' OR (manifest IS NOT NULL AND batch_rows IS NOT NULL))
);

COMMENT ON TABLE archive_months IS
    'Archiver progress per month: exporting -> exported -> verified -> detached -> dropped.';

-- Only the forward steps, and the way back to exporting, are possible.
CREATE FUNCTION sentinel_archive_months_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.state <> 'exporting' THEN
            RAISE EXCEPTION 'a month starts archiving in state exporting, not %', NEW.state;
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.month <> OLD.month THEN
        RAISE EXCEPTION 'archive_months.month cannot change';
    END IF;
    IF NEW.state <> OLD.state AND (OLD.state, NEW.state) NOT IN (
            ('exporting', 'exported'),
            ('exported', 'verified'),
            ('exported', 'exporting'),
            ('verified', 'detached'),
            ('verified', 'exporting'),
            ('detached', 'dropped'),
            ('dropped', 'exporting')) THEN
        RAISE EXCEPTION 'archive state of % cannot go from % to %', OLD.month, OLD.state, NEW.state;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER archive_months_guard
    BEFORE INSERT OR UPDATE ON archive_months
    FOR EACH ROW EXECUTE FUNCTION sentinel_archive_months_guard();

-- Detaches a verified month from audit_events. New events reach a month only through
-- audit_events, so a SHARE ROW EXCLUSIVE lock on it (readers go on, writers wait, and so
-- does any other detach, which keeps two archivers from deadlocking on the upgrade to
-- DETACH's ACCESS EXCLUSIVE) freezes the month while it is counted: if it still holds
-- exactly the rows that were exported (events are append-only, so the same count means the
-- same rows), it is detached. Otherwise late rows arrived since the export: the month goes
-- back to exporting and false is returned.
-- SECURITY DEFINER: the archiver role detaches without owning the table.
CREATE FUNCTION sentinel_detach_archived_month(archive_month date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET lock_timeout = '10s' AS $$
DECLARE
    partition_name text := 'audit_events_' || to_char(archive_month, 'YYYY_MM');
    progress archive_months%ROWTYPE;
    present bigint;
BEGIN
    SELECT * INTO progress FROM archive_months WHERE month = archive_month FOR UPDATE;
    IF NOT FOUND OR progress.state <> 'verified' THEN
        RAISE EXCEPTION 'refusing to detach %: its export is not verified (state %)',
            partition_name, coalesce(progress.state, 'none');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_inherits
                   WHERE inhrelid = to_regclass(partition_name)
                     AND inhparent = 'audit_events'::regclass) THEN
        RAISE EXCEPTION 'refusing to detach %: it is not a partition of audit_events', partition_name;
    END IF;
    LOCK TABLE ONLY audit_events IN SHARE ROW EXCLUSIVE MODE;
    EXECUTE format('SELECT count(*) FROM %I', partition_name) INTO present;
    IF present <> progress.batch_rows THEN
        UPDATE archive_months
           SET state = 'exporting', updated_at = now(),
               error = format('%s rows present, %s exported: rows arrived after the export; exporting again',
                              present, progress.batch_rows)
         WHERE month = archive_month;
        RETURN false;
    END IF;
    EXECUTE format('ALTER TABLE audit_events DETACH PARTITION %I', partition_name);
    UPDATE archive_months SET state = 'detached', error = NULL, updated_at = now()
     WHERE month = archive_month;
    RETURN true;
END
$$;

-- Drops a detached month's table. Refuses anything but a detached, verified month; a month
-- already dropped (sentinel_ensure_month_partition, below, may finish the step first) is
-- left as it is.
CREATE FUNCTION sentinel_drop_archived_month(archive_month date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET lock_timeout = '10s' AS $$
DECLARE
    partition_name text := 'audit_events_' || to_char(archive_month, 'YYYY_MM');
    progress archive_months%ROWTYPE;
BEGIN
    SELECT * INTO progress FROM archive_months WHERE month = archive_month FOR UPDATE;
    IF FOUND AND progress.state = 'dropped' THEN
        RETURN;
    END IF;
    IF NOT FOUND OR progress.state <> 'detached' THEN
        RAISE EXCEPTION 'refusing to drop %: it is not a detached, verified month (state %)',
            partition_name, coalesce(progress.state, 'none');
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass(partition_name) AND relispartition) THEN
        RAISE EXCEPTION 'refusing to drop %: it is still a partition', partition_name;
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS %I', partition_name);
    UPDATE archive_months SET state = 'dropped', error = NULL, updated_at = now()
     WHERE month = archive_month;
END
$$;

-- The writer asks sentinel_ensure_month_partition for a month it has no partition for. It now
-- also finishes the archive of a month that the archiver detached but did not drop (it
-- stopped between the two steps). Before, a late event for that month found the name taken
-- by the detached table and failed, and was retried, until the archiver's next run. The
-- detached table's rows were recounted under lock when it was detached and are verified in
-- S3, so dropping it is the very step that run would take; the late event then gets a fresh
-- partition at once, which the archiver exports as a further batch. A table of that name in
-- any other state is left alone. V1's function, renamed, still creates the partition.
ALTER FUNCTION sentinel_ensure_month_partition(timestamptz) RENAME TO sentinel_create_month_partition;
REVOKE ALL ON FUNCTION sentinel_create_month_partition(timestamptz)
    FROM PUBLIC, sentinel_writer, sentinel_archiver;

CREATE FUNCTION sentinel_ensure_month_partition(at timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    month_start date := date_trunc('month', at AT TIME ZONE 'UTC')::date;
    partition_name text := 'audit_events_' || to_char(month_start, 'YYYY_MM');
BEGIN
    IF to_regclass(partition_name) IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_inherits
                       WHERE inhrelid = to_regclass(partition_name)
                         AND inhparent = 'audit_events'::regclass) THEN
        -- Waits for an archiver that is dropping the same table.
        PERFORM 1 FROM archive_months
          WHERE month = month_start AND state = 'detached' FOR UPDATE;
        IF FOUND THEN
            RAISE LOG 'sentinel: % was left detached by the archiver; finishing its drop for a late event',
                partition_name;
            PERFORM sentinel_drop_archived_month(month_start);
        END IF;
    END IF;
    RETURN sentinel_create_month_partition(at);
END
$$;

REVOKE ALL ON FUNCTION sentinel_ensure_month_partition(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sentinel_ensure_month_partition(timestamptz)
    TO sentinel_writer, sentinel_archiver;

REVOKE ALL ON archive_months FROM PUBLIC;
REVOKE ALL ON FUNCTION sentinel_detach_archived_month(date) FROM PUBLIC;
REVOKE ALL ON FUNCTION sentinel_drop_archived_month(date) FROM PUBLIC;

-- The archiver needs no ownership: it reads events through audit_events (SELECT, granted in
-- V1), creates months through sentinel_ensure_month_partition, records its progress here,
-- and detaches and drops only through the two guarded functions above.
GRANT SELECT, INSERT, UPDATE ON archive_months TO sentinel_archiver;
GRANT EXECUTE ON FUNCTION sentinel_detach_archived_month(date) TO sentinel_archiver;
GRANT EXECUTE ON FUNCTION sentinel_drop_archived_month(date) TO sentinel_archiver;
GRANT SELECT ON archive_months TO sentinel_reader;
