-- A finished job's outcome (candidates posted, the final message with its
-- chart) is delivered once; this marks that it was.
ALTER TABLE jobs ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;
