-- V1__objects: the object store (providers, VMs, hosts, the event stream,
-- requests, tasks, ...), one table for every base class, as the redb
-- store's one `objects` table. `attrs` is `json`, not `jsonb`: json keeps
-- the text as written, so the attributes keep their order (an IndexMap)
-- and their tagged values ({"$sym":..}, {"$obj":[class,id]}, ...) exactly.
-- The finders read through expression indexes on `attrs->>'<attr>'`
-- (partial: only the rows that have the attribute), the same attributes
-- the redb store indexes.
CREATE TABLE objects (
    base  text   NOT NULL,
    id    bigint NOT NULL,
    class text   NOT NULL,
    attrs json   NOT NULL,
    PRIMARY KEY (base, id)
);

CREATE INDEX objects_name ON objects (base, (attrs->>'name')) WHERE (attrs->>'name') IS NOT NULL;
CREATE INDEX objects_ems_ref ON objects (base, (attrs->>'ems_ref')) WHERE (attrs->>'ems_ref') IS NOT NULL;
CREATE INDEX objects_uid_ems ON objects (base, (attrs->>'uid_ems')) WHERE (attrs->>'uid_ems') IS NOT NULL;
CREATE INDEX objects_userid ON objects (base, (attrs->>'userid')) WHERE (attrs->>'userid') IS NOT NULL;
CREATE INDEX objects_guid ON objects (base, (attrs->>'guid')) WHERE (attrs->>'guid') IS NOT NULL;
CREATE INDEX objects_chain_id ON objects (base, (attrs->>'chain_id')) WHERE (attrs->>'chain_id') IS NOT NULL;
CREATE INDEX objects_event_type ON objects (base, (attrs->>'event_type')) WHERE (attrs->>'event_type') IS NOT NULL;
CREATE INDEX objects_host_id ON objects (base, (attrs->>'host_id')) WHERE (attrs->>'host_id') IS NOT NULL;
CREATE INDEX objects_ems_id ON objects (base, (attrs->>'ems_id')) WHERE (attrs->>'ems_id') IS NOT NULL;
CREATE INDEX objects_vm_or_template_id ON objects (base, (attrs->>'vm_or_template_id')) WHERE (attrs->>'vm_or_template_id') IS NOT NULL;
CREATE INDEX objects_miq_request_id ON objects (base, (attrs->>'miq_request_id')) WHERE (attrs->>'miq_request_id') IS NOT NULL;
-- Exactly-once storage of events: a second node storing the same event
-- (its dedup_key) fails its commit; the event is redelivered and the
-- handler finds the stored row.
CREATE UNIQUE INDEX objects_dedup_key ON objects ((attrs->>'dedup_key'))
    WHERE base = 'EventStream' AND (attrs->>'dedup_key') IS NOT NULL AND (attrs->>'dedup_key') <> '';

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
