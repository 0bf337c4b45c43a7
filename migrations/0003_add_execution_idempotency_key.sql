-- Clients may retry a submission with the same Idempotency-Key and get the same execution.
ALTER TABLE executions ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX executions_idempotency_key_idx ON executions (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
