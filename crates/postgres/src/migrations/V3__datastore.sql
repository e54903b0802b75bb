-- V3__datastore: filled by its module (store.rs, schedule.rs, datastore.rs).
SELECT 1;
