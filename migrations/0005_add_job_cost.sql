-- What each job cost: the provider's billed compute time and the estimate from the registry.
ALTER TABLE execution_jobs
    ADD COLUMN compute_seconds double precision,
    ADD COLUMN cost_usd        numeric(12, 4);
