-- Savings: each spend event (a provider.api_call, or a terminal agent event that is not
-- itemized) is priced at ingest on every configured baseline (docs/metrics.md). The raw row
-- keeps what its baselines cost (`baselines`: {"<baseline>": {"usd", "model", "status"}}), so
-- the savings rollups can be recomputed from raw rows exactly, whatever the price book says
-- later. The rollups sum them by tenant x bucket x baseline x provider x model x task_type x
-- success.
ALTER TABLE events ADD COLUMN baselines jsonb;

CREATE TABLE rollup_savings_hourly (
    tenant_id         text        NOT NULL,
    bucket            timestamptz NOT NULL,
    baseline          text        NOT NULL,
    provider          text        NOT NULL,
    model             text        NOT NULL,
    task_type         text        NOT NULL,
    success           boolean     NOT NULL,
    -- Spend events (savings "tasks").
    tasks             bigint      NOT NULL,
    -- Tasks whose actual and baseline costs are both known: the sums cover these.
    compared          bigint      NOT NULL,
    -- Tasks left out: actual cost unknown, baseline cost unknown (a task may be both).
    actual_unpriced   bigint      NOT NULL,
    baseline_unpriced bigint      NOT NULL,
    -- Tokens of the tasks left out.
    unpriced_tokens   bigint      NOT NULL,
    -- Compared tasks with an estimated cost on either side.
    estimated         bigint      NOT NULL,
    actual_usd        numeric     NOT NULL,
    baseline_usd      numeric     NOT NULL,
    PRIMARY KEY (tenant_id, bucket, baseline, provider, model, task_type, success)
);

CREATE TABLE rollup_savings_daily (LIKE rollup_savings_hourly INCLUDING ALL);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rollup_savings_hourly', 'rollup_savings_daily'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I TO agenttally_app '
            'USING (tenant_id = current_setting(''agenttally.tenant_id'', true)) '
            'WITH CHECK (tenant_id = current_setting(''agenttally.tenant_id'', true))', t);
        EXECUTE format(
            'CREATE POLICY owner_maintenance ON %I TO %I USING (true) WITH CHECK (true)',
            t, current_user);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO agenttally_app', t);
    END LOOP;
END $$;
