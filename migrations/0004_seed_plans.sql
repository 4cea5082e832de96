-- Reference data, with a ';' inside a string literal.
-- UP
CREATE TABLE plans (
    code        text PRIMARY KEY,
    description text NOT NULL,
    max_users   integer NOT NULL
);

INSERT INTO plans (code, description, max_users) VALUES
    ('free', 'Free; one project', 3),
    ('team', 'Team; unlimited projects', 50),
    ('enterprise', 'Enterprise; SSO; audit', 10000);

ALTER TABLE accounts
    ADD CONSTRAINT accounts_plan_fkey FOREIGN KEY (plan) REFERENCES plans (code);

-- DOWN
ALTER TABLE accounts DROP CONSTRAINT accounts_plan_fkey;
DROP TABLE plans;
