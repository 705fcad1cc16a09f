-- Idempotency keys belong to a tenant. Keyed by id alone, tenant B's event with an id that
-- tenant A used within 24 hours was answered 202 and dropped, and B learned that A used it.
-- Now a key is (tenant_id, id), and so is the event's identity: two tenants may use the same
-- id at the same instant.

ALTER TABLE event_ids ADD COLUMN tenant_id text;
UPDATE event_ids k SET tenant_id = e.tenant_id
    FROM audit_events e WHERE e.id = k.id AND e.occurred_at = k.occurred_at;
-- A key whose event is no longer in PostgreSQL (archived months ago) guards nothing.
DELETE FROM event_ids WHERE tenant_id IS NULL;
ALTER TABLE event_ids ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE event_ids DROP CONSTRAINT event_ids_pkey;
ALTER TABLE event_ids ADD CONSTRAINT event_ids_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_pkey PRIMARY KEY (tenant_id, id, occurred_at);
