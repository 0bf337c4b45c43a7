-- Tracking of provider-side asynchronous jobs, as in the original design.
ALTER TABLE execution_jobs
    ADD COLUMN provider_job_id     text,
    ADD COLUMN provider_job_status text,
    ADD COLUMN waiting_strategy    text CHECK (waiting_strategy IN ('webhook', 'polling')),
    ADD COLUMN next_poll_at        timestamptz,
    ADD COLUMN poll_attempts       integer NOT NULL DEFAULT 0;

CREATE INDEX execution_jobs_provider_job_idx ON execution_jobs (provider, provider_job_id)
    WHERE provider_job_id IS NOT NULL;
