-- V2__scheduled: filled by its module (store.rs, schedule.rs, datastore.rs).
SELECT 1;
