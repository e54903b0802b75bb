-- V1__objects: the object store (providers, VMs, hosts, the event stream,
-- requests, tasks, ...), one table for every base class, as the redb
-- store's one `objects` table.
--
-- `attrs` is `json`, not `jsonb`: json keeps the text as written, so the
-- attributes keep their order (an IndexMap) and their tagged values
-- ({"$sym":..}, {"$obj":[class,id]}, ...) exactly.
--
-- The finders' keys are columns of their own, `k_<attr>`, written by the
-- store from the attributes (a string itself, an integer its digits, a
-- boolean true/false; NULL when absent, blank or of another kind), the
-- attributes the redb store indexes: an expression index on
-- `attrs->>'<attr>'` would parse the whole json text once per index at
-- every insert (a 500-event batch took 60 ms of server time that way,
-- 15 ms with these columns). Partial indexes: only the rows that have the
-- attribute.
CREATE TABLE objects (
    base  text   NOT NULL,
    id    bigint NOT NULL,
    class text   NOT NULL,
    attrs json   NOT NULL,
    k_name               text,
    k_ems_ref            text,
    k_uid_ems            text,
    k_userid             text,
    k_guid               text,
    k_chain_id           text,
    k_event_type         text,
    k_host_id            text,
    k_ems_id             text,
    k_vm_or_template_id  text,
    k_miq_request_id     text,
    k_dedup_key          text,
    PRIMARY KEY (base, id)
);

CREATE INDEX objects_name ON objects (base, k_name) WHERE k_name IS NOT NULL;
CREATE INDEX objects_ems_ref ON objects (base, k_ems_ref) WHERE k_ems_ref IS NOT NULL;
CREATE INDEX objects_uid_ems ON objects (base, k_uid_ems) WHERE k_uid_ems IS NOT NULL;
CREATE INDEX objects_userid ON objects (base, k_userid) WHERE k_userid IS NOT NULL;
CREATE INDEX objects_guid ON objects (base, k_guid) WHERE k_guid IS NOT NULL;
CREATE INDEX objects_chain_id ON objects (base, k_chain_id) WHERE k_chain_id IS NOT NULL;
CREATE INDEX objects_event_type ON objects (base, k_event_type) WHERE k_event_type IS NOT NULL;
CREATE INDEX objects_host_id ON objects (base, k_host_id) WHERE k_host_id IS NOT NULL;
CREATE INDEX objects_ems_id ON objects (base, k_ems_id) WHERE k_ems_id IS NOT NULL;
CREATE INDEX objects_vm_or_template_id ON objects (base, k_vm_or_template_id) WHERE k_vm_or_template_id IS NOT NULL;
CREATE INDEX objects_miq_request_id ON objects (base, k_miq_request_id) WHERE k_miq_request_id IS NOT NULL;
-- Exactly-once storage of events: a second node storing the same event
-- (its dedup_key) fails its commit; the event is redelivered and the
-- handler finds the stored row.
CREATE UNIQUE INDEX objects_dedup_key ON objects (base, k_dedup_key) WHERE k_dedup_key IS NOT NULL;

-- Ids are ManageIQ's region * 10^12 + seq, seq from the sequence of the
-- base class, handed out in blocks of 50 (a node takes a block per
-- nextval; ids of a block left unused at exit are gaps).
CREATE SEQUENCE objects_seq_eventstream INCREMENT BY 50;
CREATE SEQUENCE objects_seq_vmortemplate INCREMENT BY 50;
CREATE SEQUENCE objects_seq_host INCREMENT BY 50;
CREATE SEQUENCE objects_seq_extmanagementsystem INCREMENT BY 50;
CREATE SEQUENCE objects_seq_miqserver INCREMENT BY 50;
CREATE SEQUENCE objects_seq_user INCREMENT BY 50;
CREATE SEQUENCE objects_seq_miqgroup INCREMENT BY 50;
CREATE SEQUENCE objects_seq_tenant INCREMENT BY 50;
CREATE SEQUENCE objects_seq_storage INCREMENT BY 50;
CREATE SEQUENCE objects_seq_emscluster INCREMENT BY 50;
CREATE SEQUENCE objects_seq_miqrequest INCREMENT BY 50;
CREATE SEQUENCE objects_seq_miqrequesttask INCREMENT BY 50;
CREATE SEQUENCE objects_seq_miqpolicy INCREMENT BY 50;
CREATE SEQUENCE objects_seq_miqalert INCREMENT BY 50;
