-- V1__objects: filled by its module (store.rs, schedule.rs, datastore.rs).
SELECT 1;
