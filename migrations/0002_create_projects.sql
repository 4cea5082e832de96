-- Projects belong to accounts; memberships link users to projects.
-- UP
CREATE TABLE projects (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    slug        text NOT NULL,
    archived    boolean NOT NULL DEFAULT false,
    UNIQUE (account_id, slug)
);

CREATE TABLE project_members (
    project_id  bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    PRIMARY KEY (project_id, user_id)
);

-- DOWN
DROP TABLE project_members;
DROP TABLE projects;
