-- Issue #18: codes typed to finish a password login are counted apart from codes typed in an
-- established session, so whoever has only the password cannot use up the owner's attempts.
ALTER TABLE two_factor ADD COLUMN login_failures BIGINT NOT NULL DEFAULT 0 CHECK (login_failures >= 0);
ALTER TABLE two_factor ADD COLUMN login_window_start BIGINT NULL;
