-- Hands-off posting (issue #6).
-- last_run_at: when the persona's schedule last ran (UTC ISO), so that runs
-- missed while the bot was down are found at start (they coalesce into one).
-- posting_notice: the last "nothing to do" notice said in the log channel
-- ('empty', 'cap:daily:2026-03-29', ...), so that it is said once, not at
-- every run.
ALTER TABLE personas ADD COLUMN last_run_at TEXT;
ALTER TABLE personas ADD COLUMN posting_notice TEXT;

-- What the posting service has to tell Discord: a line for the persona's log
-- channel and/or a candidate message to edit. Written in the same process
-- that posts (the bot, or `parodybot post-now`), delivered by the bot.
CREATE TABLE posting_events (
    id           INTEGER PRIMARY KEY,
    persona      TEXT NOT NULL,
    candidate_id INTEGER,
    kind         TEXT NOT NULL,
    text         TEXT,
    refresh      INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    delivered_at TEXT
);
CREATE INDEX posting_events_pending ON posting_events(delivered_at);

-- Posting attempts now leave rows on candidates that are still queued
-- (failed attempts) or failed (outcome unknown); deleting such a candidate
-- (e.g. with its persona) takes its rows with it. SQLite cannot alter a
-- foreign key, so the table is rebuilt.
CREATE TABLE posts_new (
    id           INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,
    platform     TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'sending' CHECK (state IN ('sending', 'posted', 'failed', 'unknown')),
    remote_id    TEXT,
    url          TEXT,
    error        TEXT,
    claimed_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    posted_at    TEXT,
    UNIQUE (candidate_id, platform)
);
INSERT INTO posts_new (id, candidate_id, platform, state, remote_id, url, error, claimed_at, posted_at)
    SELECT id, candidate_id, platform, state, remote_id, url, error, claimed_at, posted_at FROM posts;
DROP TABLE posts;
ALTER TABLE posts_new RENAME TO posts;
CREATE INDEX posts_state ON posts(state);
