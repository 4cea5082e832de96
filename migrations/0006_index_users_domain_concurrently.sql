-- CREATE INDEX CONCURRENTLY cannot run inside a transaction block: migrate-job detects
-- that with PostgreSQL's parser and runs this file statement by statement, recording progress.
-- UP
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_domain_idx ON users (email_domain);

-- DOWN
DROP INDEX CONCURRENTLY IF EXISTS users_email_domain_idx;
