// The dashboard page: sign-in, the range / time zone / filter controls, the three dashboards
// (Cost Savings, Usage, Billing) and live updates.
import "./style.css";
import { render } from "preact";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { Api, ApiError, type Credentials, type Summary } from "./api";
import { BillingDashboard } from "./billing";
import { add } from "./dec";
import { subscribe, type LiveState, type RecentEvent, type Update } from "./live";
import { PRESETS, day, includesNow, last24h, rangeOf, showTime, timeZones, type Preset } from "./range";
import { SavingsDashboard } from "./savings";
import * as session from "./session";
import { UsageDashboard } from "./usage";
import { Money, PageContext, groupName, useLoad, type Ctx, type Filters } from "./ui";

type Tab = "savings" | "usage" | "billing";
const TABS: { id: Tab; label: string }[] = [
  { id: "savings", label: "Cost Savings" },
  { id: "usage", label: "Usage" },
  { id: "billing", label: "Billing" },
];

const FILTER_LABEL: Record<keyof Filters, string> = {
  provider: "Provider",
  model: "Model",
  task_type: "Task type",
  agent_id: "Agent",
};

function SignIn(props: { onSignedIn: (c: Credentials, tenant: string) => void; message: string }) {
  const [token, setToken] = useState("");
  const [tenant, setTenant] = useState("");
  const [error, setError] = useState(props.message);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const cred = { token: token.trim(), tenant: tenant.trim() };
    if (!cred.token) {
      setError("Paste an API key or a JWT.");
      return;
    }
    setBusy(true);
    setError("");
    try {
      const s = await new Api(cred).get<Summary>("/v1/metrics/summary", { ...last24h() });
      props.onSignedIn(cred, s.tenant_id);
    } catch (err) {
      setError(signInError(err, cred.tenant));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <h1>AgentTally</h1>
      <form onSubmit={(e) => void submit(e)} aria-describedby="signin-help">
        <p id="signin-help">
          Sign in with an API key with the <code>read</code> scope, or a JWT. It is kept in this
          tab only and sent to this collector alone.
        </p>
        <label for="token">API key or JWT</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="off"
          spellcheck={false}
          value={token}
          onInput={(e) => setToken(e.currentTarget.value)}
          required
        />
        <label for="tenant">
          Tenant <span class="muted">(platform credentials only)</span>
        </label>
        <input
          id="tenant"
          name="tenant"
          autocomplete="off"
          spellcheck={false}
          pattern="[A-Za-z0-9._:\-]{1,128}"
          value={tenant}
          onInput={(e) => setTenant(e.currentTarget.value)}
        />
        {error && (
          <p class="error" role="alert" data-testid="signin-error">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

function signInError(err: unknown, tenant: string): string {
  if (!(err instanceof ApiError)) return String(err);
  if (err.status === 422 && /tenant_id/.test(err.message) && !tenant) {
    return "This credential is platform-wide: enter the tenant to view.";
  }
  if (err.status === 401) return `The credential was refused: ${err.message}`;
  if (err.status === 403) return `Not allowed: ${err.message}`;
  return err.message;
}

/** Add a live update's delta to the summary it was loaded with. */
function withDelta(s: Summary, u: Update): Summary {
  const d = u.delta;
  const executions = s.executions + d.executions;
  const successes = s.successes + d.successes;
  return {
    ...s,
    executions,
    successes,
    failures: s.failures + d.failures,
    success_rate: executions > 0 ? successes / executions : null,
    cost_usd: add(s.cost_usd, d.cost_usd),
    unpriced_events: s.unpriced_events + d.unpriced_events,
    api_calls: s.api_calls + d.api_calls,
  };
}

function Dashboard(props: {
  cred: Credentials;
  /** The tenant as far as known before the first answer names it. */
  tenant: string;
  onRefused: (err: ApiError) => void;
  onSignOut: () => void;
}) {
  const api = useMemo(() => new Api(props.cred), [props.cred]);
  const [tab, setTab] = useState<Tab>("savings");
  const [preset, setPreset] = useState<Preset>("30d");
  const [custom, setCustom] = useState(() => {
    const now = Date.now();
    return { from: day(now - 29 * 86_400_000), to: day(now) };
  });
  const [tz, setTz] = useState("UTC");
  // Four hundred-odd options cost a page load about 60 ms of style and layout: the select holds
  // the few zones that matter until it is focused or touched, or the page has settled.
  const [allZones, setAllZones] = useState(false);
  useEffect(() => {
    const t = setTimeout(() => setAllZones(true), 2000);
    return () => clearTimeout(t);
  }, []);
  const zones = useMemo(() => timeZones(tz, allZones), [tz, allZones]);
  const [filters, setFilters] = useState<Filters>({ provider: "", model: "", task_type: "", agent_id: "" });
  const [options, setOptions] = useState<Record<keyof Filters, string[]>>({
    provider: [],
    model: [],
    task_type: [],
    agent_id: [],
  });
  const [refresh, setRefresh] = useState(0);
  const [live, setLive] = useState<LiveState>("connecting");
  const [recent, setRecent] = useState<RecentEvent[]>([]);
  const [deltas, setDeltas] = useState<Update[]>([]);

  const range = rangeOf(preset, custom);
  const rangeOk = typeof range !== "string";
  const rangeKey = rangeOk ? `${range.from}|${range.to}` : "";

  const summary = useLoad(
    () =>
      rangeOk
        ? api.get<Summary>("/v1/metrics/summary", { ...range, tz })
        : Promise.reject(new ApiError(0, "range", range)),
    `${rangeKey}|${refresh}`,
  );
  // Deltas count from the summary they are added to.
  useEffect(() => setDeltas([]), [summary.data]);
  const tenant = summary.data?.tenant_id ?? props.tenant;
  useEffect(() => {
    if (summary.state === "error" && refused(summary.error)) props.onRefused(summary.error);
  }, [summary]);
  const shown = useMemo(() => {
    if (!summary.data || !rangeOk || !includesNow(range)) return summary;
    const data = deltas.reduce(withDelta, summary.data);
    return { ...summary, data };
  }, [summary, deltas]);

  // Figures other than the summary are re-read after updates, at most every 15 s.
  const pending = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(
    () =>
      subscribe(api, {
        state: setLive,
        update: (u) => {
          setRecent((r) => [...u.recent, ...r].slice(0, 20));
          setDeltas((d) => [...d, u]);
          if (!pending.current) {
            pending.current = setTimeout(() => {
              pending.current = undefined;
              setRefresh((n) => n + 1);
            }, 15_000);
          }
        },
        resync: () => setRefresh((n) => n + 1),
      }),
    [api],
  );
  useEffect(() => () => clearTimeout(pending.current), []);

  const offer = useCallback((dim: keyof Filters, values: string[]) => {
    setOptions((o) => {
      const merged = Array.from(new Set([...o[dim], ...values])).sort();
      return merged.length === o[dim].length ? o : { ...o, [dim]: merged };
    });
  }, []);

  const ctx: Ctx | null = rangeOk
    ? { api, range: { ...range, tz }, tz, filters, refresh, offer }
    : null;

  const onTabKey = (e: KeyboardEvent) => {
    const i = TABS.findIndex((t) => t.id === tab);
    const next = e.key === "ArrowRight" ? i + 1 : e.key === "ArrowLeft" ? i - 1 : null;
    if (next === null) return;
    e.preventDefault();
    const t = TABS[(next + TABS.length) % TABS.length];
    if (t) {
      setTab(t.id);
      document.getElementById(`tab-${t.id}`)?.focus();
    }
  };

  return (
    <>
      <header class="top">
        <h1>AgentTally</h1>
        <span class="tenant" data-testid="tenant">
          Tenant <strong>{tenant}</strong>
        </span>
        <span class={`live-state ${live}`} role="status" data-testid="live-state">
          {live === "live"
            ? "● Live"
            : live === "unavailable"
              ? "live updates unavailable"
              : live === "reconnecting"
                ? "reconnecting…"
                : "connecting…"}
        </span>
        <button type="button" class="signout" onClick={props.onSignOut}>
          Sign out
        </button>
      </header>
      <nav class="tabs" role="tablist" aria-label="Dashboards" onKeyDown={onTabKey}>
        {TABS.map((t) => (
          <button
            type="button"
            role="tab"
            id={`tab-${t.id}`}
            aria-selected={tab === t.id}
            aria-controls="tabpanel"
            tabIndex={tab === t.id ? 0 : -1}
            onClick={() => setTab(t.id)}
            key={t.id}
          >
            {t.label}
          </button>
        ))}
      </nav>
      <form class="controls" aria-label="Range, time zone and filters" onSubmit={(e) => e.preventDefault()}>
        <fieldset class="presets">
          <legend>Range (UTC days)</legend>
          {PRESETS.map((p) => (
            <label key={p.id} class={preset === p.id ? "chip on" : "chip"}>
              <input
                type="radio"
                name="preset"
                value={p.id}
                checked={preset === p.id}
                onChange={() => setPreset(p.id)}
              />
              {p.label}
            </label>
          ))}
        </fieldset>
        {preset === "custom" && (
          <div class="custom">
            <label>
              From <input type="date" value={custom.from} onChange={(e) => setCustom({ ...custom, from: e.currentTarget.value })} />
            </label>
            <label>
              To <input type="date" value={custom.to} onChange={(e) => setCustom({ ...custom, to: e.currentTarget.value })} />
            </label>
          </div>
        )}
        <label>
          Time zone
          <select
            value={tz}
            onFocus={() => setAllZones(true)}
            onPointerDown={() => setAllZones(true)}
            onChange={(e) => setTz(e.currentTarget.value)}
          >
            {zones.map((z) => (
              <option key={z}>{z}</option>
            ))}
          </select>
        </label>
        {(["provider", "model", "task_type", "agent_id"] as const).map((dim) => (
          <label key={dim}>
            {FILTER_LABEL[dim]}
            <select
              value={filters[dim]}
              data-testid={`filter-${dim}`}
              onChange={(e) => setFilters({ ...filters, [dim]: e.currentTarget.value })}
            >
              <option value="">All</option>
              {options[dim].map((v) => (
                <option key={v} value={v}>
                  {groupName(v)}
                </option>
              ))}
            </select>
          </label>
        ))}
        <p class="note filters-note">
          Filters narrow the breakdowns, trends and recommendations; totals cover all of the
          tenant's usage. A trend is narrowed by one filter at a time.
        </p>
      </form>
      {rangeOk ? (
        <p class="range" data-testid="range" data-from={range.from} data-to={range.to}>
          {showTime(range.from, tz)} – {showTime(range.to, tz)} ({tz})
        </p>
      ) : (
        <p class="error" role="alert">
          {range}
        </p>
      )}
      <main id="dashboard">
        <div id="tabpanel" role="tabpanel" aria-labelledby={`tab-${tab}`} data-testid={`dashboard-${tab}`}>
          {ctx && (
            <PageContext.Provider value={ctx}>
              {tab === "savings" && <SavingsDashboard />}
              {tab === "usage" && <UsageDashboard summary={shown} />}
              {tab === "billing" && <BillingDashboard />}
            </PageContext.Provider>
          )}
        </div>
        <section class="panel wide recent" aria-labelledby="recent-title" data-testid="recent">
          <h2 id="recent-title">Newest events</h2>
          {live === "unavailable" ? (
            <p class="muted">Live updates are unavailable on this collector.</p>
          ) : recent.length === 0 ? (
            <p class="muted">Events tracked from now on appear here.</p>
          ) : (
            <ul aria-live="polite">
              {recent.map((e) => (
                <li key={e.id} data-testid="recent-event" data-id={e.id}>
                  <time dateTime={e.ts}>{showTime(e.ts, tz)}</time> <code>{e.event_type}</code>{" "}
                  {[e.provider, e.model, e.task_type, e.agent_id].filter(Boolean).join(" · ")}{" "}
                  {e.event_type === "provider.api_call" || e.cost_usd !== null ? <Money v={e.cost_usd} /> : null}
                  {e.success === false && <span class="bad"> failed</span>}
                </li>
              ))}
            </ul>
          )}
        </section>
      </main>
    </>
  );
}

/** Whether an error means the credential itself was refused (sign in again), not a panel's
 * failure. */
function refused(err: ApiError): boolean {
  return err.status === 401 || err.status === 403 || (err.status === 422 && /tenant_id/.test(err.message));
}

function App() {
  // A stored credential (or a `#token=` link) opens the dashboard at once: its first reads check
  // the credential, and a refusal returns here with the API's message. The sign-in form checks
  // before it opens the dashboard.
  const [state, setState] = useState<{ cred: Credentials; tenant: string } | null>(() => {
    const cred = session.load();
    return cred ? { cred, tenant: cred.tenant } : null;
  });
  const [message, setMessage] = useState("");
  const signOut = (msg: string) => {
    session.clear();
    setMessage(msg);
    setState(null);
  };
  if (!state) {
    return (
      <SignIn
        message={message}
        onSignedIn={(cred, tenant) => {
          session.save(cred);
          setState({ cred, tenant });
        }}
      />
    );
  }
  return (
    <Dashboard
      cred={state.cred}
      tenant={state.tenant}
      onRefused={(err) => signOut(signInError(err, state.cred.tenant))}
      onSignOut={() => signOut("")}
    />
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
