-- Agent rollups: the usage rollups' sums by tenant x bucket x event_type x agent_id x itemized
-- ('' = no agent), for series grouped by agent (docs/metrics.md, "Agents"). A table of its own
-- rather than an agent_id key column in rollup_hourly/_daily: a column there would multiply
-- every row of those tables by the agents, while the agent rows here are few (events of an
-- hour x event types x agents). Written by the writer in the transaction that stores the raw
-- rows, from the newly inserted rows only, like the other rollups; checked and repaired by
-- `verify`. Events stored before this migration are not in it until `verify --repair` has
-- recomputed their days (only days still in raw retention can be).
CREATE TABLE rollup_agent_hourly (
    tenant_id             text        NOT NULL,
    bucket                timestamptz NOT NULL,
    event_type            text        NOT NULL,
    agent_id              text        NOT NULL,
    itemized              boolean     NOT NULL,
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
    PRIMARY KEY (tenant_id, bucket, event_type, agent_id, itemized)
);

CREATE TABLE rollup_agent_daily (LIKE rollup_agent_hourly INCLUDING ALL);

SELECT agenttally_tenant_table('rollup_agent_hourly');
SELECT agenttally_tenant_table('rollup_agent_daily');
