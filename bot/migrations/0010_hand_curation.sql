-- Hand curation (issue 14): a "check" job runs the generation filters over
-- hand-written texts on the worker, and every edit of a candidate is kept.
-- SQLite cannot change a CHECK constraint: the jobs table is rebuilt with the
-- same columns and one more kind.
CREATE TABLE jobs_new (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('train', 'generate', 'import', 'check')),
    persona      TEXT NOT NULL,
    queue_id     TEXT UNIQUE,
    requested_by INTEGER,
    params       TEXT NOT NULL DEFAULT '{}',
    state        TEXT NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    progress     TEXT NOT NULL DEFAULT '{}',
    result       TEXT,
    error        TEXT,
    channel_id   INTEGER,
    message_id   INTEGER,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at   TEXT,
    finished_at  TEXT,
    delivered    INTEGER NOT NULL DEFAULT 0,
    guild_id     INTEGER NOT NULL DEFAULT 0
);
INSERT INTO jobs_new (id, kind, persona, queue_id, requested_by, params, state, progress, result, error,
                      channel_id, message_id, created_at, started_at, finished_at, delivered, guild_id)
    SELECT id, kind, persona, queue_id, requested_by, params, state, progress, result, error,
           channel_id, message_id, created_at, started_at, finished_at, delivered, guild_id FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_state ON jobs(state);
CREATE INDEX jobs_guild ON jobs(guild_id, id);

CREATE TABLE candidate_edits (
    id           INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,
    old_text     TEXT NOT NULL,
    new_text     TEXT NOT NULL,
    old_state    TEXT NOT NULL,
    old_score    INTEGER NOT NULL,
    edited_by    INTEGER,
    job_id       INTEGER UNIQUE,   -- the check job that made it: an edit is applied once
    edited_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX candidate_edits_candidate ON candidate_edits(candidate_id);
