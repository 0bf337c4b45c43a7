-- One row per job of a plan; the job record id is what webhooks and workflow ids carry.
CREATE TABLE execution_jobs (
    id            text PRIMARY KEY,
    execution_id  text NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    job_id        text NOT NULL,
    position      integer NOT NULL,
    operation     text NOT NULL,
    model_id      text,
    provider      text,
    params        jsonb NOT NULL,
    depends_on    jsonb NOT NULL DEFAULT '[]'::jsonb,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'queued', 'processing', 'completed', 'failed',
                                    'canceled', 'skipped')),
    outputs       jsonb NOT NULL DEFAULT '[]'::jsonb,
    error         text,
    progress      double precision CHECK (progress IS NULL OR (progress >= 0 AND progress <= 1)),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz,
    UNIQUE (execution_id, job_id)
);

CREATE INDEX execution_jobs_execution_idx ON execution_jobs (execution_id, position);
