-- Delivering a candidate to its curation channel is claimed before the message
-- is sent (issue 12): a candidate with a claim and no message_id may have been
-- sent by a process that died before recording it, so the next delivery looks
-- for that message in the channel and adopts it instead of sending another.
ALTER TABLE candidates ADD COLUMN delivery_claimed_at TEXT;
