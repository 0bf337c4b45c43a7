-- A job whose failure its dependents may run past (when they do not use its output).
ALTER TABLE execution_jobs ADD COLUMN continue_on_error boolean NOT NULL DEFAULT false;
