-- One row per submitted execution plan.
CREATE TABLE executions (
    id            text PRIMARY KEY,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'completed', 'failed', 'canceled')),
    plan          jsonb NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);

CREATE INDEX executions_created_at_idx ON executions (created_at DESC, id DESC);
CREATE INDEX executions_status_idx ON executions (status);
