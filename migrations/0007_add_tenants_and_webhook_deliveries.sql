-- Executions belong to the tenant whose API key submitted them; keys are per tenant.
ALTER TABLE executions ADD COLUMN tenant text NOT NULL DEFAULT 'default';
DROP INDEX executions_idempotency_key_idx;
CREATE UNIQUE INDEX executions_tenant_idempotency_key_idx ON executions (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX executions_tenant_created_at_idx ON executions (tenant, created_at DESC, id DESC);

-- Verified webhook deliveries, so a redelivery is recognised and answered without a second
-- signal; `outcome` says what became of each.
CREATE TABLE webhook_deliveries (
    provider      text NOT NULL,
    delivery_id   text NOT NULL,
    job_record_id text NOT NULL,
    outcome       text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, delivery_id)
);
CREATE INDEX webhook_deliveries_received_at_idx ON webhook_deliveries (received_at);
