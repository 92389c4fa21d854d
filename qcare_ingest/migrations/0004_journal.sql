-- The journal (issue 15): every accepted message as the gateway received it: the request's
-- bytes, Content-Type, receipt time and the API key's name, next to its inbox row and
-- written by the worker in the transaction that writes that row. The operations console
-- shows it; `qcare-ingest rebuild` re-binds and re-applies it into a fresh schema to prove
-- that the live tables are what the messages say. It goes with its inbox row (prune).
CREATE TABLE journal (
    msg_id        text        PRIMARY KEY REFERENCES inbox (msg_id) ON DELETE CASCADE,
    received_at   timestamptz NOT NULL,       -- the gateway's receipt time (the version)
    content_type  text,                       -- the request's Content-Type, as sent
    client        text,                       -- the API key's name (NULL: auth off)
    body          bytea       NOT NULL,       -- the request body, byte for byte
    as_received   boolean     NOT NULL,       -- false: a message queued before the journal
                                              -- existed; body is then its canonical JSON
    dto           text        NOT NULL        -- the canonical DTO JSON the worker applied
);
CREATE INDEX journal_received_idx ON journal (received_at, msg_id);

-- The console searches messages by patient and time (issue 15).
CREATE INDEX inbox_patient_idx ON inbox (patient_key) WHERE patient_key IS NOT NULL;
CREATE INDEX inbox_received_idx ON inbox (received_at);
