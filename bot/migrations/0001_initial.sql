-- The domain of DESIGN.md section 3. JSON columns hold small structured values.

CREATE TABLE personas (
    name                TEXT PRIMARY KEY,
    guild_id            INTEGER,
    curation_channel_id INTEGER,
    log_channel_id      INTEGER,
    sources             TEXT NOT NULL DEFAULT '[]',   -- [{"platform": "x", "handle": "dril"}]
    base_model          TEXT NOT NULL DEFAULT 'tiny',
    rules               TEXT NOT NULL DEFAULT '{}',   -- vote rule overrides
    schedule            TEXT NOT NULL DEFAULT '{}',   -- {"cron": ..., "timezone": ..., "jitter_minutes": ...}
    targets             TEXT NOT NULL DEFAULT '[{"platform": "outbox"}]',
    state               TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused')),
    paused_reason       TEXT,
    created_by          INTEGER,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE datasets (
    id          INTEGER PRIMARY KEY,
    persona     TEXT NOT NULL REFERENCES personas(name) ON DELETE CASCADE,
    source      TEXT NOT NULL,
    fetched_at  TEXT NOT NULL,
    kept        INTEGER NOT NULL,
    dropped     TEXT NOT NULL DEFAULT '{}',
    sha256      TEXT
);

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('train', 'generate', 'import')),
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
    finished_at  TEXT
);
CREATE INDEX jobs_state ON jobs(state);

CREATE TABLE candidates (
    id              INTEGER PRIMARY KEY,
    persona         TEXT NOT NULL,
    job_id          INTEGER REFERENCES jobs(id),
    text            TEXT NOT NULL,
    settings        TEXT NOT NULL DEFAULT '{}',
    flags           TEXT NOT NULL DEFAULT '{}',
    state           TEXT NOT NULL DEFAULT 'voting'
                    CHECK (state IN ('voting', 'approved', 'rejected', 'expired', 'posting', 'posted', 'failed')),
    score           INTEGER NOT NULL DEFAULT 0,
    channel_id      INTEGER,
    message_id      INTEGER UNIQUE,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    voting_ends_at  TEXT,
    decided_at      TEXT,
    queue_rank      REAL,          -- lower goes first among approved; NULL = by score then age
    note            TEXT
);
CREATE INDEX candidates_persona_state ON candidates(persona, state);

-- The reactions a member has on a candidate's message (approve/reject emoji);
-- a member's vote is the net of them.
CREATE TABLE reactions (
    candidate_id INTEGER NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,
    member_id    INTEGER NOT NULL,
    emoji        TEXT NOT NULL,
    PRIMARY KEY (candidate_id, member_id, emoji)
);

CREATE TABLE votes (
    candidate_id INTEGER NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,
    member_id    INTEGER NOT NULL,
    value        INTEGER NOT NULL CHECK (value IN (-1, 0, 1)),
    at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (candidate_id, member_id)
);

-- One row per candidate and platform. The row is written ('sending') before
-- the publisher is called, so a crash in between is found at start.
CREATE TABLE posts (
    id           INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    platform     TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'sending' CHECK (state IN ('sending', 'posted', 'failed', 'unknown')),
    remote_id    TEXT,
    url          TEXT,
    error        TEXT,
    claimed_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    posted_at    TEXT,
    UNIQUE (candidate_id, platform)
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
