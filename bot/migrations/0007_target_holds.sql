-- A publish target held back (issue 13): X's usage cap answers 429 until the
-- billing period ends, so a run must not call it again before then.
-- {"x": {"until": "2027-01-01T00:00:00.000000Z", "why": "Usage cap exceeded: Monthly product cap"}}
ALTER TABLE personas ADD COLUMN target_holds TEXT NOT NULL DEFAULT '{}';
