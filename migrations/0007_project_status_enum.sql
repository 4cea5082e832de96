-- A file that wraps its body in its own BEGIN/COMMIT: still one transaction with its history row.
-- UP
BEGIN;
CREATE TYPE project_status AS ENUM ('active', 'paused', 'archived');
ALTER TABLE projects ADD COLUMN status project_status NOT NULL DEFAULT 'active';
UPDATE projects SET status = 'archived' WHERE archived;
COMMIT;

-- DOWN
BEGIN;
ALTER TABLE projects DROP COLUMN status;
DROP TYPE project_status;
COMMIT;
