-- Access control: one function that makes a table a tenant table (row-level security enabled and
-- FORCEd, the tenant isolation policy, the owner's maintenance policy, the app role's grants),
-- used from here on for every new tenant table; the audit log of data access; API keys gain a
-- name. api_keys stays a reference table (looked up by hash before any tenant is known): the key
-- admin routes name the tenant in every statement.

CREATE FUNCTION agenttally_tenant_table(t regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = t AND polname = 'tenant_isolation') THEN
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %s TO agenttally_app '
            'USING (tenant_id = current_setting(''agenttally.tenant_id'', true)) '
            'WITH CHECK (tenant_id = current_setting(''agenttally.tenant_id'', true))', t);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = t AND polname = 'owner_maintenance') THEN
        EXECUTE format(
            'CREATE POLICY owner_maintenance ON %s TO %I USING (true) WITH CHECK (true)',
            t, current_user);
    END IF;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO agenttally_app', t);
END $$;

-- One row per call of an audited route (reads, exports, erasure, keys, the audit log itself),
-- written after the handler answered and before the answer leaves.
CREATE TABLE audit_log (
    tenant_id      text        NOT NULL,
    id             bigint      GENERATED ALWAYS AS IDENTITY,
    at             timestamptz NOT NULL DEFAULT now(),
    -- The API key's prefix, or `jwt:<sub>`.
    credential_id  text        NOT NULL,
    -- 'key' or 'jwt'
    principal_kind text        NOT NULL,
    sub            text,
    method         text        NOT NULL,
    -- The matched route template, e.g. /v1/keys/{prefix}.
    route          text        NOT NULL,
    -- The query string and path parameters; never a credential.
    params         jsonb       NOT NULL DEFAULT '{}',
    status         int         NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at);

SELECT agenttally_tenant_table('audit_log');

GRANT USAGE ON SEQUENCE audit_log_id_seq TO agenttally_app;

ALTER TABLE api_keys ADD COLUMN name text;
