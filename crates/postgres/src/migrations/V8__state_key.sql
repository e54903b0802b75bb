-- V8__state_key: `state` becomes a finder key as the redb store's
-- attr_index has it (its version 5): a provider's catcher polls its queued
-- operations (MiqQueue rows in state `ready`) by it at every poll, reading
-- only those, not every operation of the provider kept with its final
-- state. Existing rows get the key the store would write (a string itself,
-- an integer its digits, a boolean true/false; NULL otherwise).
ALTER TABLE objects ADD COLUMN IF NOT EXISTS k_state text;

UPDATE objects SET k_state = CASE json_typeof(attrs->'state')
        WHEN 'string' THEN NULLIF(attrs->>'state', '')
        WHEN 'number' THEN attrs->>'state'
        WHEN 'boolean' THEN attrs->>'state'
    END
WHERE json_typeof(attrs->'state') IN ('string', 'number', 'boolean');

CREATE INDEX IF NOT EXISTS objects_state ON objects (base, k_state) WHERE k_state IS NOT NULL;
