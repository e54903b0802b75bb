-- Scheduled work (state-machine retries, request work, `deliver_on`):
-- claimed with FOR UPDATE SKIP LOCKED, leased to a node until lease_until.
-- Times are microseconds since the Unix epoch (as automate_vmdb::to_micros).
-- A claimed row's run_at is the end of its lease (= lease_until), so the
-- due rows, never claimed or with their lease run out, are one range of
-- (run_at, id): in run-at order, then the order they were scheduled.
CREATE TABLE scheduled (
    id          bigserial PRIMARY KEY,
    kind        text    NOT NULL,
    payload     jsonb   NOT NULL,
    run_at      bigint  NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    lease_until bigint,
    node        text
);
CREATE INDEX scheduled_run_at ON scheduled (run_at, id);
CREATE INDEX scheduled_kind_run_at ON scheduled (kind, run_at, id);
-- release_leases: one node's leases.
CREATE INDEX scheduled_node ON scheduled (node) WHERE lease_until IS NOT NULL;
