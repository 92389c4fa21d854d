-- The DICOM Modality Worklist (issue 16): a modality asks for one day's orders of its
-- modality (often of the next few days), or for one patient or accession number.
-- The index is on the Modality a worklist item shows (upper-cased, trimmed: CS), then the
-- scheduled instant, so "this day, this modality" is one index range; and on the instant
-- alone for date-only queries. Patient and accession lookups use the existing keys.
CREATE INDEX orders_worklist_idx ON orders ((upper(btrim(modality))), study_at);
CREATE INDEX orders_study_at_idx ON orders (study_at);
