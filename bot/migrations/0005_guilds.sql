-- Every persona belongs to one guild (issue 11).
--
-- personas.key is what everything else calls a persona: candidates.persona,
-- jobs.persona, posting_events.persona, datasets.persona and the worker's
-- folders (datasets/<key>/, checkpoint/<key>/). It is set once and never
-- changes. New personas get 'g<guild id>-<name>'; personas from before keep
-- their name as their key, so their rows and the worker's checkpoints stay
-- where they are. Names cannot contain '-', so no new key equals an old one.
-- Names are unique within a guild only; guild 0 holds personas that were made
-- outside any guild (a DM) before this migration.
CREATE TABLE personas_new (
    key                 TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    guild_id            INTEGER NOT NULL DEFAULT 0,
    curation_channel_id INTEGER,
    log_channel_id      INTEGER,
    sources             TEXT NOT NULL DEFAULT '[]',
    base_model          TEXT NOT NULL DEFAULT 'tiny',
    rules               TEXT NOT NULL DEFAULT '{}',
    schedule            TEXT NOT NULL DEFAULT '{}',
    targets             TEXT NOT NULL DEFAULT '[{"platform": "outbox"}]',
    state               TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused')),
    paused_reason       TEXT,
    created_by          INTEGER,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_run_at         TEXT,
    posting_notice      TEXT,
    retry_at            TEXT,
    UNIQUE (guild_id, name)
);
INSERT INTO personas_new (key, name, guild_id, curation_channel_id, log_channel_id, sources, base_model, rules,
                          schedule, targets, state, paused_reason, created_by, created_at, last_run_at,
                          posting_notice, retry_at)
    SELECT name, name, COALESCE(guild_id, 0), curation_channel_id, log_channel_id, sources, base_model, rules,
           schedule, targets, state, paused_reason, created_by, created_at, last_run_at, posting_notice, retry_at
    FROM personas;

-- datasets referred to personas(name); it now refers to the key.
CREATE TABLE datasets_new (
    id          INTEGER PRIMARY KEY,
    persona     TEXT NOT NULL REFERENCES personas(key) ON DELETE CASCADE,
    source      TEXT NOT NULL,
    fetched_at  TEXT NOT NULL,
    kept        INTEGER NOT NULL,
    dropped     TEXT NOT NULL DEFAULT '{}',
    sha256      TEXT
);
INSERT INTO datasets_new SELECT * FROM datasets;
DROP TABLE datasets;
DROP TABLE personas;
ALTER TABLE personas_new RENAME TO personas;
ALTER TABLE datasets_new RENAME TO datasets;

-- A job belongs to the guild it was asked in, so /jobs and /cancel stay in
-- that guild even after its persona is gone.
ALTER TABLE jobs ADD COLUMN guild_id INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET guild_id = COALESCE((SELECT guild_id FROM personas WHERE personas.key = jobs.persona), 0);
CREATE INDEX jobs_guild ON jobs(guild_id, id);
CREATE INDEX candidates_job ON candidates(job_id);
