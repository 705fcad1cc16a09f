-- The reader's window on events (issue 10): the rows of the tenant its transaction names in
-- `sentinel.tenant_id`, and nothing when it names none, as the row-level security policy on
-- audit_events gives, but usable with every index. Under the policy PostgreSQL may not
-- evaluate a function that is not LEAKPROOF before the policy's own condition, so `changes @>`
-- (jsonb_contains, not leakproof) could never use the GIN index: "who changed status to
-- chargeback?" walked all the tenant's events in range (measured at 5M events: 1,078 ms as
-- the reader role against 0.7 ms as the owner; BENCHMARKS.md, Identity). This view is not a
-- security barrier, so the planner combines the reader's conditions with its tenant condition
-- and picks the same plans as for the owner; every row it returns still satisfies
-- `tenant_id = current_setting('sentinel.tenant_id')`, so a query built wrongly still cannot
-- return another tenant's rows. (Without a barrier, a leaky function in a query could observe
-- other rows before they are filtered; the reader's queries use only built-in operators on
-- bound parameters, none of which raise errors per row, and the reader role cannot create
-- functions.) The view reads audit_events with its owner's rights; the reader keeps SELECT on
-- audit_events under the policy, for anything that reads the table itself.
CREATE VIEW tenant_events AS
    SELECT * FROM audit_events
    WHERE tenant_id = current_setting('sentinel.tenant_id', true);

REVOKE ALL ON tenant_events FROM PUBLIC;
GRANT SELECT ON tenant_events TO sentinel_reader;
