-- An audit log filled by a trigger function. The function body contains semicolons
-- inside a $$ dollar-quoted string: a naive splitter on ';' would break it.
-- UP
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name  text NOT NULL,
    row_id      bigint,
    action      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (table_name, row_id, action)
    VALUES (TG_TABLE_NAME, NEW.id, TG_OP);  -- one; two; three
    RETURN NEW;
END;
$$;

CREATE TRIGGER projects_audit
    AFTER INSERT OR UPDATE ON projects
    FOR EACH ROW EXECUTE FUNCTION audit_row();

-- DOWN
DROP TRIGGER projects_audit ON projects;
DROP FUNCTION audit_row();
DROP TABLE audit_log;
