-- Reads of personal data (issue 14): who (key name, or the CLI's user), what (an accession
-- or msg_id), when, from where. Append-only: the services' roles get INSERT only (db.py's
-- grants), and no role may change a row once written; only `qcare-ingest prune`, as the
-- owner, deletes rows past their retention.
CREATE TABLE audit_log (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    who      text        NOT NULL,
    action   text        NOT NULL,      -- 'order_read', 'dlq_reveal', ...
    subject  text        NOT NULL,      -- accessionNo or msg_id: never the personal data itself
    client   text,                      -- the client's address, or 'cli:user@host'
    outcome  text        NOT NULL       -- 'shown', 'not_found'
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_who_idx ON audit_log (who, at);

CREATE FUNCTION audit_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: rows cannot be updated'
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_immutable();
