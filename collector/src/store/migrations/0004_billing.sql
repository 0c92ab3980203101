-- Billing: each tenant's tier (from its latest billing.subscription_created|upgraded event, or
-- set by an admin; the latest wins), and the tier-limit thresholds already recorded this period
-- (so billing.tier_limit_warning / _exceeded is recorded once per tenant, limit and period, even
-- with several collectors: see collector/src/billing/watch.rs).
CREATE TABLE tenant_tiers (
    tenant_id    text        NOT NULL PRIMARY KEY,
    tier         text        NOT NULL,
    -- 'event' or 'admin'
    source       text        NOT NULL,
    effective_at timestamptz NOT NULL
);

CREATE TABLE tier_limit_marks (
    tenant_id   text        NOT NULL,
    -- 'YYYY-MM' (UTC)
    period      text        NOT NULL,
    metric      text        NOT NULL,
    -- 'warning' (80%) or 'exceeded' (100%)
    level       text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, period, metric, level)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant_tiers', 'tier_limit_marks'] LOOP
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
