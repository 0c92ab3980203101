-- AgentTally collector schema v1. Every primary/unique key of tenant data begins with tenant_id.

-- Data access runs as this role: not a superuser and without BYPASSRLS, so row-level security
-- applies to it. The collector's own (owning) user switches to it with SET LOCAL ROLE.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'agenttally_app') THEN
        CREATE ROLE agenttally_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT agenttally_app TO %I', current_user);
    END IF;
END $$;

-- Raw events, partitioned by day (UTC) on ts. The primary key must include the partition key;
-- dedupe on (tenant_id, id) alone is enforced by event_ids below.
CREATE TABLE events (
    tenant_id             text        NOT NULL,
    id                    uuid        NOT NULL,
    ts                    timestamptz NOT NULL,
    event_type            text        NOT NULL,
    correlation_id        text        NOT NULL,
    user_id               text,
    agent_id              text,
    workflow_id           text,
    duration_ms           bigint,
    queue_ms              bigint,
    cost_usd              numeric,
    cost_status           text,
    price_version         text,
    provider              text,
    model                 text,
    task_type             text,
    service_tier          text,
    input_tokens          bigint,
    cached_input_tokens   bigint,
    cache_write_tokens    bigint,
    cache_write_1h_tokens bigint,
    output_tokens         bigint,
    reasoning_tokens      bigint,
    requests              bigint,
    success               boolean     NOT NULL,
    error_code            text,
    metadata              jsonb       NOT NULL DEFAULT '{}',
    received_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id, ts)
) PARTITION BY RANGE (ts);

CREATE INDEX events_tenant_ts ON events (tenant_id, ts);

-- One row per stored event: the dedupe key across partitions. Inserted with
-- ON CONFLICT DO NOTHING RETURNING in the transaction that stores the raw row; retention deletes the
-- ids of a partition in the transaction that drops it.
CREATE TABLE event_ids (
    tenant_id text NOT NULL,
    id        uuid NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- Merge two sparse histograms {"bucket": count} by adding counts.
CREATE FUNCTION agenttally_hist_merge(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(k, n), '{}'::jsonb)
    FROM (
        SELECT k, sum(v::bigint) AS n
        FROM (
            SELECT key AS k, value AS v FROM jsonb_each_text(coalesce(a, '{}'::jsonb))
            UNION ALL
            SELECT key, value FROM jsonb_each_text(coalesce(b, '{}'::jsonb))
        ) s
        GROUP BY k
    ) t
$$;

-- Sum of histograms over rows (for the query API).
CREATE AGGREGATE agenttally_hist_sum(jsonb) (
    SFUNC = agenttally_hist_merge,
    STYPE = jsonb,
    INITCOND = '{}'
);

-- Rollups by tenant x bucket x event_type x provider x model x task_type ('' = absent).
-- Histograms: log buckets of duration/queue ms, see store/histogram.rs.
CREATE TABLE rollup_hourly (
    tenant_id             text        NOT NULL,
    bucket                timestamptz NOT NULL,
    event_type            text        NOT NULL,
    provider              text        NOT NULL,
    model                 text        NOT NULL,
    task_type             text        NOT NULL,
    events                bigint      NOT NULL,
    successes             bigint      NOT NULL,
    cost_usd              numeric     NOT NULL,
    costed_events         bigint      NOT NULL,
    unpriced_events       bigint      NOT NULL,
    unpriced_tokens       bigint      NOT NULL,
    input_tokens          bigint      NOT NULL,
    cached_input_tokens   bigint      NOT NULL,
    cache_write_tokens    bigint      NOT NULL,
    cache_write_1h_tokens bigint      NOT NULL,
    output_tokens         bigint      NOT NULL,
    reasoning_tokens      bigint      NOT NULL,
    requests              bigint      NOT NULL,
    duration_count        bigint      NOT NULL,
    duration_sum_ms       bigint      NOT NULL,
    duration_hist         jsonb       NOT NULL,
    queue_count           bigint      NOT NULL,
    queue_sum_ms          bigint      NOT NULL,
    queue_hist            jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, bucket, event_type, provider, model, task_type)
);

CREATE TABLE rollup_daily (LIKE rollup_hourly INCLUDING ALL);

-- API keys: looked up by hash before any tenant is known, so not tenant-scoped (a reference
-- table under Citus). tenant_id NULL = platform-wide.
CREATE TABLE api_keys (
    key_hash   bytea       PRIMARY KEY,
    key_prefix text        NOT NULL,
    tenant_id  text,
    scopes     text[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Create the day partition of events holding `day` (UTC) unless it exists.
CREATE FUNCTION agenttally_ensure_partition(day date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    name text := 'events_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(name) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('agenttally_partitions'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                name,
                (day::timestamp AT TIME ZONE 'UTC'),
                ((day + 1)::timestamp AT TIME ZONE 'UTC'));
        END IF;
    END IF;
END $$;

-- Drop the day partitions that ended more than keep_days days ago, with their dedupe ids.
CREATE FUNCTION agenttally_drop_expired_partitions(keep_days int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n int := 0;
BEGIN
    FOR r IN
        SELECT c.relname
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass
          AND c.relname ~ '^events_[0-9]{8}$'
          AND to_date(substr(c.relname, 8), 'YYYYMMDD')
              < (now() AT TIME ZONE 'UTC')::date - keep_days
        ORDER BY c.relname
    LOOP
        EXECUTE format(
            'DELETE FROM event_ids e USING %I p WHERE e.tenant_id = p.tenant_id AND e.id = p.id',
            r.relname);
        EXECUTE format('DROP TABLE %I', r.relname);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- Tenant isolation in the database: the app role sees and writes only the rows of the tenant
-- its transaction set with set_config('agenttally.tenant_id', ..., true). FORCE applies the
-- policies to the table owner too; the owner (who runs migrations and retention) gets an
-- explicit maintenance policy, and a superuser bypasses RLS by definition.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['events', 'event_ids', 'rollup_hourly', 'rollup_daily'] LOOP
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
