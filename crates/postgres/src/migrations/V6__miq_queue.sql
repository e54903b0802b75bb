-- V5__miq_queue: provider operations (ManageIQ's MiqQueue messages of the
-- ems_operations role, `automate_vmdb::operation`) are objects of their own
-- base class, MiqQueue, found by their provider (k_ems_id): the id sequence
-- of that base class.
CREATE SEQUENCE IF NOT EXISTS objects_seq_miqqueue INCREMENT BY 50;
