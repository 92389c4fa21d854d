-- Inbox: one row per msg_id ever processed (dedupe, status for GET /messages).
CREATE TABLE inbox (
    msg_id        text PRIMARY KEY,
    body_sha256   bytea       NOT NULL,
    received_at   timestamptz NOT NULL,            -- the gateway's receipt time: the version
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz NOT NULL DEFAULT now(),
    status        text        NOT NULL CHECK (status IN ('applied', 'stale', 'rejected', 'dead_lettered')),
    accession_no  text,
    patient_key   text,
    warnings      jsonb       NOT NULL DEFAULT '[]',
    stale_for     jsonb       NOT NULL DEFAULT '[]',
    error         text,
    attempts      integer     NOT NULL DEFAULT 1
);
CREATE INDEX inbox_accession_idx ON inbox (accession_no);

-- Same msg_id, different content: never applied, kept for ops.
CREATE TABLE inbox_conflicts (
    id           bigserial PRIMARY KEY,
    msg_id       text        NOT NULL,
    body_sha256  bytea       NOT NULL,
    received_at  timestamptz NOT NULL,
    detected_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbox_conflicts_msg_idx ON inbox_conflicts (msg_id);

-- Every field carries the version (received_at µs, msg_id) of the update that set it:
-- field_versions = {"name": "00001761465091816624|msg-1", ...}; merging per field makes
-- any delivery order end where applying the updates in received_at order would.
CREATE TABLE patients (
    patient_key     text PRIMARY KEY,                 -- 'HKID:A1234563' or 'PASSNO:K1234567'
    hkid            text,                             -- normalised
    hkid_raw        text,
    hkid_valid      boolean,
    passno          text,
    name            text,
    gender          text CHECK (gender IN ('M', 'F', 'U')),
    gender_raw      text,
    dob             date,
    dob_raw         text,
    address         text,
    field_versions  jsonb       NOT NULL DEFAULT '{}',
    version         text        NOT NULL DEFAULT '',  -- newest version applied to any field
    last_msg_id     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patients_hkid_idx ON patients (hkid) WHERE hkid IS NOT NULL;
CREATE INDEX patients_passno_idx ON patients (passno) WHERE passno IS NOT NULL;

CREATE TABLE orders (
    accession_no         text PRIMARY KEY,
    patient_key          text REFERENCES patients (patient_key),
    study_date_raw       text,
    study_at             timestamptz,
    study_time           text,
    location             text,
    chitno               text,
    plan_type            text,
    ref_doctor           text,
    ref_clinic_fullname  text,
    cs_code              text,
    modality             text,
    ref_clinic_fullname2 text,                         -- refClinicFullname (camelCase twin)
    exam_clinic_fullname text,
    field_versions       jsonb       NOT NULL DEFAULT '{}',
    version              text        NOT NULL DEFAULT '',
    last_msg_id          text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_patient_idx ON orders (patient_key);

CREATE TABLE order_services (
    accession_no  text    NOT NULL REFERENCES orders (accession_no) ON DELETE CASCADE,
    line_no       integer NOT NULL,
    study_desc    text,
    bodypart      text,
    no_of_images  integer NOT NULL DEFAULT 0,
    warning_time  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (accession_no, line_no)
);
