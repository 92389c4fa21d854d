-- FHIR R4 searches (issue 16). ServiceRequest?authored= ranges over when an order was first
-- seen; ?identifier=urn:qcare:id:chitno|... looks a chit number up; Patient?identifier=
-- urn:qcare:id:passport|... matches the passport number as patient_key normalises it
-- (trimmed, upper case: fhir_queries.PASSNO_NORMALISED, the same expression). Occurrence
-- uses orders_study_at_idx (0005), patient and accession the existing keys.
CREATE INDEX orders_created_at_idx ON orders (created_at);
CREATE INDEX orders_chitno_idx ON orders (chitno) WHERE chitno IS NOT NULL;
CREATE INDEX patients_passno_normalised_idx ON patients ((upper(btrim(passno, E' \t\n\r\f\v'))));
