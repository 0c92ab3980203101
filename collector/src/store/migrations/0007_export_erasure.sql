-- GDPR export links and erasure (docs/security.md, "Export and erasure").

-- One-time export links. The token (32 random bytes) is never stored: only its SHA-256. A link
-- is a tenant row like any other (row-level security, purged with the tenant); the one lookup
-- made before the tenant is known, the claim by hash, goes through
-- agenttally_claim_export_link below. tenant_id leads the primary key; the hash is looked up
-- through a plain index (256 random bits do not collide, so uniqueness needs no global index).
CREATE TABLE export_links (
    tenant_id   text        NOT NULL,
    token_hash  bytea       NOT NULL,
    -- 'ndjson', 'csv' or 'json'
    format      text        NOT NULL,
    -- The range exported: [range_from, range_to); NULL: unbounded on that side.
    range_from  timestamptz,
    range_to    timestamptz,
    -- The credential that made the link (an API key's prefix), named in the export event.
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (tenant_id, token_hash)
);

CREATE INDEX export_links_token_hash ON export_links (token_hash);

-- Erasure: the personal fields of an erased raw event are cleared at once (erased_at), the row
-- itself is deleted by the collector's upkeep once purge_after has passed.
ALTER TABLE events ADD COLUMN erased_at timestamptz;
ALTER TABLE events ADD COLUMN purge_after timestamptz;
CREATE INDEX events_purge_after ON events (purge_after) WHERE purge_after IS NOT NULL;

-- Tenant-days some of whose raw rows were deleted by an erasure while their rollups keep the
-- totals: the accuracy check (store/verify.rs) cannot recompute those days from raw rows and
-- skips them.
CREATE TABLE purged_days (
    tenant_id  text        NOT NULL,
    day        date        NOT NULL,
    rows       bigint      NOT NULL,
    purged_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day)
);

SELECT agenttally_tenant_table('export_links');
SELECT agenttally_tenant_table('purged_days');

-- Claim a link by its token's hash, before any tenant is known: the only way the app role
-- reaches a link of a tenant it has not switched to. Marks an unused, unexpired link used and
-- returns it with outcome 'claimed'; a used or expired one is returned unchanged with outcome
-- 'used' or 'expired'; an unknown hash returns no row. Two concurrent claims of one link: the
-- second waits for the first's row lock, then finds it used.
CREATE FUNCTION agenttally_claim_export_link(hash bytea)
RETURNS TABLE (outcome text, tenant_id text, format text, range_from timestamptz,
               range_to timestamptz, created_by text, expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    RETURN QUERY
        UPDATE export_links l SET used_at = now()
        WHERE l.token_hash = hash AND l.used_at IS NULL AND l.expires_at > now()
        RETURNING 'claimed'::text, l.tenant_id, l.format, l.range_from, l.range_to,
                  l.created_by, l.expires_at;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT CASE WHEN l.used_at IS NOT NULL THEN 'used' ELSE 'expired' END,
               l.tenant_id, l.format, l.range_from, l.range_to, l.created_by, l.expires_at
        FROM export_links l WHERE l.token_hash = hash;
END $$;

REVOKE ALL ON FUNCTION agenttally_claim_export_link(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agenttally_claim_export_link(bytea) TO agenttally_app;
