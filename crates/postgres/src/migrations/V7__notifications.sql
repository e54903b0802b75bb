-- V5__notifications: the id sequence of the `Notification` base class
-- (notifications methods create with `evm.create_notification`), as V1
-- made one for every other base class.
CREATE SEQUENCE IF NOT EXISTS objects_seq_notification INCREMENT BY 50;
