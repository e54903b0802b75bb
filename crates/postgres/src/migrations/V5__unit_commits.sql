-- V5__unit_commits: one row per committed unit of work, written in the
-- unit's own transaction, so that a commit whose reply was lost (the
-- connection cut, or no answer in time) can be told apart from one that
-- failed: the writer then inserts the same id marked failed on another
-- connection. That insert waits for the unit's transaction if it is still
-- open; it conflicts when the unit committed (the row says what it wrote),
-- and otherwise fences the unit out (it can no longer commit: its own
-- insert of the id would conflict). Rows older than an hour are pruned.
CREATE TABLE unit_commits (
    id        text PRIMARY KEY,
    failed    boolean NOT NULL DEFAULT false,
    changed   integer NOT NULL DEFAULT 0,
    scheduled bigint[] NOT NULL DEFAULT '{}',
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX unit_commits_at ON unit_commits USING brin (at);
