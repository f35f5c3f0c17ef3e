-- A persona that /train made is on trial until its first import succeeds
-- (issue 16): first_import_job names the job; when that job ends before its
-- posts were fetched and cleaned, the persona goes again, so a zip bomb or an
-- unreadable CSV leaves nothing behind.
ALTER TABLE personas ADD COLUMN first_import_job INTEGER;
