-- Rollups split terminal agent events into itemized ones (their cost and usage repeat the sum of
-- the run's provider.api_call events: metadata.calls >= 1) and the rest, so spend is a plain sum
-- over rollup rows and never counts a run's cost twice (docs/metrics.md). A key column: rows
-- stored before this migration count as not itemized.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rollup_hourly', 'rollup_daily'] LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN itemized boolean NOT NULL DEFAULT false', t);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', t, t || '_pkey');
        EXECUTE format(
            'ALTER TABLE %I ADD PRIMARY KEY '
            '(tenant_id, bucket, event_type, provider, model, task_type, itemized)', t);
    END LOOP;
END $$;
