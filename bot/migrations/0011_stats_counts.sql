-- /stats at scale (issue 15): votes, distinct voters and candidates by state
-- per persona without reading every vote and candidate. One row per persona and member: how many candidates of
-- the persona the member has a vote on now. Triggers keep it true on every
-- path that writes votes (a vote, a reconciliation, an edit, a cascade).
CREATE TABLE persona_voters (
    persona   TEXT NOT NULL,
    member_id INTEGER NOT NULL,
    votes     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (persona, member_id)
) WITHOUT ROWID;

INSERT INTO persona_voters(persona, member_id, votes)
    SELECT c.persona, v.member_id, COUNT(*) FROM votes v JOIN candidates c ON c.id = v.candidate_id
    WHERE v.value != 0 GROUP BY c.persona, v.member_id;

CREATE TRIGGER votes_count_insert AFTER INSERT ON votes WHEN NEW.value != 0 BEGIN
    INSERT INTO persona_voters(persona, member_id, votes)
        SELECT persona, NEW.member_id, 1 FROM candidates WHERE id = NEW.candidate_id
        ON CONFLICT(persona, member_id) DO UPDATE SET votes = votes + 1;
END;

CREATE TRIGGER votes_count_delete AFTER DELETE ON votes WHEN OLD.value != 0 BEGIN
    UPDATE persona_voters SET votes = votes - 1
        WHERE persona = (SELECT persona FROM candidates WHERE id = OLD.candidate_id) AND member_id = OLD.member_id;
END;

CREATE TRIGGER votes_count_update AFTER UPDATE OF value ON votes WHEN (OLD.value != 0) != (NEW.value != 0) BEGIN
    INSERT INTO persona_voters(persona, member_id, votes)
        SELECT persona, NEW.member_id, CASE WHEN NEW.value != 0 THEN 1 ELSE 0 END FROM candidates
        WHERE id = NEW.candidate_id
        ON CONFLICT(persona, member_id) DO UPDATE SET votes = votes + CASE WHEN NEW.value != 0 THEN 1 ELSE -1 END;
END;

-- Candidates per persona and state, kept the same way (/stats without counting 100,000 rows).
CREATE TABLE candidate_counts (
    persona TEXT NOT NULL,
    state   TEXT NOT NULL,
    n       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (persona, state)
) WITHOUT ROWID;

INSERT INTO candidate_counts(persona, state, n) SELECT persona, state, COUNT(*) FROM candidates GROUP BY persona, state;

CREATE TRIGGER candidates_count_insert AFTER INSERT ON candidates BEGIN
    INSERT INTO candidate_counts(persona, state, n) VALUES (NEW.persona, NEW.state, 1)
        ON CONFLICT(persona, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER candidates_count_delete AFTER DELETE ON candidates BEGIN
    UPDATE candidate_counts SET n = n - 1 WHERE persona = OLD.persona AND state = OLD.state;
END;

CREATE TRIGGER candidates_count_update AFTER UPDATE OF persona, state ON candidates
        WHEN OLD.persona != NEW.persona OR OLD.state != NEW.state BEGIN
    UPDATE candidate_counts SET n = n - 1 WHERE persona = OLD.persona AND state = OLD.state;
    INSERT INTO candidate_counts(persona, state, n) VALUES (NEW.persona, NEW.state, 1)
        ON CONFLICT(persona, state) DO UPDATE SET n = n + 1;
END;

-- The best liked three of each persona, read from an index instead of a sort of all.
CREATE INDEX candidates_persona_score ON candidates(persona, score DESC, id);

-- The approved queue in posting order (bot/store.py POSTING_ORDER), read from an
-- index: /queue show reads the first rows only, however long the queue.
CREATE INDEX candidates_posting_order ON candidates(persona, state, queue_rank IS NULL, queue_rank, score DESC, id);
