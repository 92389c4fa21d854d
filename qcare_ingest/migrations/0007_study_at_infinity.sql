-- A studyDate at UTC's first or last microsecond (0001-01-01T00:00:00Z, 9999-12-31T23:59:59.9999999Z)
-- was stored by asyncpg as -infinity / infinity, which every reader took for an instant (and
-- FHIR date searches matched). Since dates.to_instant refuses those two instants, such an order
-- has no instant, its text kept in study_date_raw; this brings rows written before into line.
UPDATE orders SET study_at = NULL WHERE study_at IN ('-infinity', 'infinity');
