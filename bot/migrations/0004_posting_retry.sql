-- retry_at: when a rate-limited posting run tries again (UTC ISO), written
-- by the scheduler when it schedules the retry and cleared when the retry
-- fires, when a later run settles it, or when the persona is paused; at
-- start the scheduler re-adds the retry (or runs it at once if its time
-- passed while the bot was down), so that it survives a restart.
ALTER TABLE personas ADD COLUMN retry_at TEXT;
