-- The datastore shared by every node (as ManageIQ's miq_ae_* tables in the
-- VMDB): one row per domain, its files (relative path and bytes) in
-- domain_files, replaced whole in one transaction per change. `version`
-- comes from one sequence: every publish or removal of any domain takes the
-- next value, so "newer" is a plain comparison, and the change is announced
-- with NOTIFY datastore, '<domain>:<version>' (delivered on commit).
CREATE SEQUENCE datastore_versions;
CREATE TABLE domains (
    name       text        PRIMARY KEY,
    priority   bigint      NOT NULL DEFAULT 0,
    enabled    boolean     NOT NULL DEFAULT true,
    source     text        NOT NULL DEFAULT 'user',
    commit_sha text,
    digest     text        NOT NULL,
    version    bigint      NOT NULL,
    updated_on timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL
);
-- Domain names are case-insensitive, as on a node's datastore root.
CREATE UNIQUE INDEX domains_lower_name ON domains (lower(name));
CREATE TABLE domain_files (
    domain text  NOT NULL REFERENCES domains (name) ON DELETE CASCADE ON UPDATE CASCADE,
    path   text  NOT NULL,
    body   bytea NOT NULL,
    PRIMARY KEY (domain, path)
);
