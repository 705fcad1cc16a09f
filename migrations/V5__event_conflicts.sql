-- Conflicts (issue 10): an event whose (tenant, id) was already stored with other content.
-- Only the first copy is an event; a later copy that differs is never dropped silently: it
-- is kept here, exactly as it came off the stream (its canonical record), beside the stored
-- copy it disagrees with, for an operator to see (`sentinel conflicts`). A redelivery of the
-- same record is kept once. Like rejected_records, this holds what any tenant sent, so only
-- the writer (to add) and operators (as the table owner) touch it.
CREATE TABLE event_conflicts (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id           text        NOT NULL,
    event_id            text        NOT NULL,
    -- the stored copy's occurred_at and row (NULL when its month has left PostgreSQL)
    stored_occurred_at  timestamptz,
    stored              jsonb,
    -- the copy that was not stored: its canonical stream record, byte for byte
    conflicting         bytea       NOT NULL,
    conflicting_sha256  bytea       NOT NULL GENERATED ALWAYS AS (sha256(conflicting)) STORED,
    detected_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_conflicts_once UNIQUE (tenant_id, event_id, conflicting_sha256)
);
CREATE INDEX event_conflicts_detected_at_idx ON event_conflicts (detected_at);

REVOKE ALL ON event_conflicts FROM PUBLIC;
GRANT INSERT ON event_conflicts TO sentinel_writer;
