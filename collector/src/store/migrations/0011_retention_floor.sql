-- The shortest retention an operator has agreed to for this database. A collector whose
-- configured raw or hourly retention is shorter refuses to start instead of deleting what the
-- database was set to keep (a mistyped AGENTTALLY_RAW_RETENTION_DAYS would otherwise drop days
-- of raw events at start). Written once by the first collector that starts on the database (its
-- settings), and by `agenttally-collector retention`, the deliberate way to shorten retention.
-- Longer settings need no record: they delete less. One row.
CREATE TABLE retention_floor (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    raw_days    integer     NOT NULL CHECK (raw_days >= 1),
    hourly_days integer     NOT NULL CHECK (hourly_days >= 1),
    set_at      timestamptz NOT NULL DEFAULT now(),
    set_by      text        NOT NULL
);
