-- Daily rollups of closed days, compacted (`store/compact.rs`): the rows of days before
-- yesterday (UTC) move out of each daily rollup table into a table per month,
-- `<table>_YYYY_MM`, an inheritance child of the daily table (a query of the daily table reads
-- its children too), appended in tenant order; a closed month's table is rewritten whole in
-- tenant order once rows were appended to it. One row per month table: how many of its rows
-- were written in tenant order by its last rewrite (or by the one move that filled it), and how
-- many were appended since. Kept by the compaction, read by nothing else; owner only.
CREATE TABLE rollup_months (
    child         text        PRIMARY KEY,
    parent        text        NOT NULL,
    month         date        NOT NULL,
    sorted_rows   bigint      NOT NULL DEFAULT 0,
    appended_rows bigint      NOT NULL DEFAULT 0,
    rewritten_at  timestamptz
);
