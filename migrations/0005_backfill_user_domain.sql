-- Add a column and backfill it in the same transaction as the history row.
-- UP
ALTER TABLE users ADD COLUMN email_domain text;

UPDATE users
SET email_domain = lower(split_part(email, '@', 2))
WHERE email_domain IS NULL;

-- DOWN
ALTER TABLE users DROP COLUMN email_domain;
