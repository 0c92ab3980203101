-- Negotiated prices: per-tenant LiteLLM-format entries, each in effect from a date, layered over
-- the collector's book for that tenant only (collector/src/pricing.rs). Set by an admin
-- (`agenttally-collector prices set`); every collector reloads them periodically.
CREATE TABLE tenant_prices (
    tenant_id      text        NOT NULL,
    model          text        NOT NULL,
    effective_from timestamptz NOT NULL,
    -- One LiteLLM entry: {"input_cost_per_token": "...", ...}
    entry          jsonb       NOT NULL,
    set_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, model, effective_from)
);

ALTER TABLE tenant_prices ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_prices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_prices TO agenttally_app
    USING (tenant_id = current_setting('agenttally.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('agenttally.tenant_id', true));
DO $$
BEGIN
    EXECUTE format(
        'CREATE POLICY owner_maintenance ON tenant_prices TO %I USING (true) WITH CHECK (true)',
        current_user);
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_prices TO agenttally_app;
