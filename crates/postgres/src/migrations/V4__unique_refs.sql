-- V4__unique_refs: one provider per name, one VM or host per provider
-- reference, across nodes. Two nodes seeing a provider (or a VM, or a host)
-- for the first time at once both try to create it; the second insert
-- fails on these indexes and its caller finds the first one's row (the
-- handler looks again after a failed create), as the dedup_key index does
-- for events. Without them each node would keep its own provider row, and
-- the events de-duplicated by (event, provider id) would be stored twice.
CREATE UNIQUE INDEX objects_provider_name ON objects (k_name)
    WHERE base = 'ExtManagementSystem' AND k_name IS NOT NULL;
CREATE UNIQUE INDEX objects_provider_ref ON objects (base, k_ems_id, k_ems_ref)
    WHERE base IN ('Host', 'VmOrTemplate') AND k_ems_id IS NOT NULL AND k_ems_ref IS NOT NULL;
