-- Hour totals: one row per tenant and hour with what the peaks endpoint ranks hours by, summed
-- over the hour's rows of rollup_hourly as the summary counts them (executions and failures
-- from terminal agent events, API calls, and the spend of API calls and of terminal events that
-- are not itemized: cost, unpriced events, prompt plus output tokens). An hour of the usage
-- rollup holds a row per event type, provider, model and task type; here it is one row, so a
-- range of hours is read from a fraction of the pages. Written by the writer in the transaction
-- that stores the raw rows (from the usage deltas of the newly inserted rows), kept as long as
-- the hourly rollups, checked and repaired by `verify`. An hour that counts nothing (only
-- agent.started or billing events) has no row.
CREATE TABLE rollup_tenant_hourly (
    tenant_id       text        NOT NULL,
    bucket          timestamptz NOT NULL,
    executions      bigint      NOT NULL,
    failures        bigint      NOT NULL,
    api_calls       bigint      NOT NULL,
    cost_usd        numeric     NOT NULL,
    unpriced_events bigint      NOT NULL,
    tokens          bigint      NOT NULL,
    PRIMARY KEY (tenant_id, bucket)
);

SELECT agenttally_tenant_table('rollup_tenant_hourly');

-- The hours already stored, from the usage rollup (run as the owner: every tenant).
INSERT INTO rollup_tenant_hourly
SELECT tenant_id, bucket, executions, failures, api_calls, cost_usd, unpriced_events, tokens
FROM (
    SELECT tenant_id, bucket,
           coalesce(sum(events) FILTER (WHERE outcome), 0)::bigint AS executions,
           coalesce(sum(events - successes) FILTER (WHERE outcome), 0)::bigint AS failures,
           coalesce(sum(events) FILTER (WHERE api_call), 0)::bigint AS api_calls,
           coalesce(sum(cost_usd) FILTER (WHERE api_call OR (outcome AND NOT itemized)), 0)
               AS cost_usd,
           coalesce(sum(unpriced_events) FILTER (WHERE api_call OR (outcome AND NOT itemized)),
               0)::bigint AS unpriced_events,
           coalesce(sum(input_tokens + cached_input_tokens + cache_write_tokens
                        + cache_write_1h_tokens + output_tokens)
               FILTER (WHERE api_call OR (outcome AND NOT itemized)), 0)::bigint AS tokens
    FROM (
        SELECT *, event_type IN ('agent.completed', 'agent.failed', 'agent.timeout') AS outcome,
               event_type = 'provider.api_call' AS api_call
        FROM rollup_hourly
    ) r
    GROUP BY tenant_id, bucket
) h
WHERE executions > 0 OR api_calls > 0;
