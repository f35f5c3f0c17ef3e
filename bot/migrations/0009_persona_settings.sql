-- A persona's own defaults for what it generates and imports (issue 14):
-- {"mentions": "defuse" | "drop" | "keep", "prompt", "top_k", "seed", "length",
--  "temperature", "top_p", "exclude": a regular expression for source posts}.
-- A key left out means the config's default.
ALTER TABLE personas ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
