-- Scheduled work (state-machine retries, request work, `deliver_on`):
-- claimed with FOR UPDATE SKIP LOCKED, leased to a node until lease_until.
-- Times are microseconds since the Unix epoch (as automate_vmdb::to_micros).
CREATE TABLE scheduled (
    id          bigserial PRIMARY KEY,
    kind        text    NOT NULL,
    payload     jsonb   NOT NULL,
    run_at      bigint  NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    lease_until bigint,
    node        text
);
CREATE INDEX scheduled_run_at ON scheduled (run_at);
CREATE INDEX scheduled_kind_run_at ON scheduled (kind, run_at);
