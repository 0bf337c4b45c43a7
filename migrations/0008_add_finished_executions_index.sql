-- Retention pages through finished executions by completion time.
CREATE INDEX executions_finished_completed_at_idx ON executions (completed_at, id)
    WHERE status IN ('completed', 'failed', 'canceled');
