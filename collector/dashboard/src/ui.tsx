// Pieces every dashboard uses: the page context, data loading, panels with their downloads,
// tiles, money that says "unpriced" rather than $0, and tables.
import type { ComponentChildren } from "preact";
import { createContext } from "preact";
import { useContext, useLayoutEffect, useState } from "preact/hooks";
import { Api, ApiError, type Params } from "./api";
import { usd } from "./dec";
import type { Range } from "./range";

export interface Filters {
  provider: string;
  model: string;
  task_type: string;
  agent_id: string;
}

export interface Ctx {
  api: Api;
  /** The date range, with the time zone the read API buckets days and months in. */
  range: Range & { tz: string };
  tz: string;
  filters: Filters;
  /** Bumped to re-read every panel (live updates, resync). */
  refresh: number;
  /** Options for the filters, learned from the data shown. */
  offer: (dim: keyof Filters, values: string[]) => void;
}

export const PageContext = createContext<Ctx | null>(null);

export function usePage(): Ctx {
  const c = useContext(PageContext);
  if (!c) throw new Error("usePage outside the page");
  return c;
}

export type Load<T> =
  | { state: "loading"; data?: T }
  | { state: "ok"; data: T }
  | { state: "error"; error: ApiError; data?: T };

/** Run `fetcher` whenever `key` changes (the previous data stays shown while it runs). */
export function useLoad<T>(fetcher: () => Promise<T>, key: string): Load<T> {
  const [load, setLoad] = useState<Load<T>>({ state: "loading" });
  // A layout effect: the request leaves as soon as the panel is rendered, before the page is
  // painted.
  useLayoutEffect(() => {
    let live = true;
    setLoad((l) => (l.state === "loading" && l.data === undefined ? l : { state: "loading", data: l.data }));
    fetcher().then(
      (data) => live && setLoad({ state: "ok", data }),
      (e: unknown) =>
        live &&
        setLoad((l) => ({
          state: "error",
          data: l.data,
          error: e instanceof ApiError ? e : new ApiError(0, "client", String(e)),
        })),
    );
    return () => {
      live = false;
    };
    // `key` names everything `fetcher` reads.
  }, [key]);
  return load;
}

/** Save `blob` as a file named `name`. */
export function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.rel = "noopener";
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export interface Download {
  /** The API endpoint and parameters whose `format=csv` answer is the panel's CSV. */
  csv?: { path: string; params: Params };
  /** The JSON the panel was drawn from. */
  json: unknown;
  name: string;
}

export function Panel(props: {
  id: string;
  title: string;
  load?: Load<unknown>;
  download?: Download;
  note?: ComponentChildren;
  wide?: boolean;
  children?: ComponentChildren;
}) {
  const { api } = usePage();
  const { id, title, load, download, note, wide, children } = props;
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState("");
  const csv = async () => {
    if (!download?.csv) return;
    setBusy(true);
    setErr("");
    try {
      saveBlob(await api.csv(download.csv.path, download.csv.params), `${download.name}.csv`);
    } catch (e) {
      setErr(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  const json = () => {
    if (!download) return;
    const text = JSON.stringify(download.json, null, 2) + "\n";
    saveBlob(new Blob([text], { type: "application/json" }), `${download.name}.json`);
  };
  return (
    <section
      class={wide ? "panel wide" : "panel"}
      id={id}
      data-testid={`panel-${id}`}
      aria-labelledby={`${id}-title`}
      aria-busy={load?.state === "loading"}
    >
      <header class="panel-head">
        <h2 id={`${id}-title`}>{title}</h2>
        {download && (
          <div class="downloads">
            {download.csv && (
              <button type="button" onClick={() => void csv()} disabled={busy} data-testid={`csv-${id}`}>
                CSV<span class="sr"> of {title}</span>
              </button>
            )}
            <button type="button" onClick={json} data-testid={`json-${id}`}>
              JSON<span class="sr"> of {title}</span>
            </button>
          </div>
        )}
      </header>
      {note && <p class="note">{note}</p>}
      {err && (
        <p class="error" role="alert">
          {err}
        </p>
      )}
      {load?.state === "error" && (
        <p class="error" role="alert">
          Could not load: {load.error.message}
        </p>
      )}
      {load?.state === "loading" && !load.data ? <p class="muted">Loading…</p> : children}
    </section>
  );
}

/** A money figure: `null` is unpriced, and $0 with unpriced events is not shown as $0. */
export function Money(props: { v: string | null | undefined; unpriced?: number }) {
  const { v, unpriced = 0 } = props;
  if (v === null || v === undefined) return <span class="unpriced">unpriced</span>;
  if (unpriced > 0 && /^-?0(\.0*)?$/.test(v)) {
    return <span class="unpriced">unpriced ({count(unpriced)} events)</span>;
  }
  return (
    <span>
      {usd(v)}
      {unpriced > 0 && <span class="unpriced"> + {count(unpriced)} unpriced</span>}
    </span>
  );
}

export function Tile(props: {
  id: string;
  label: string;
  /** The API's value, exactly, for tests and copy. */
  raw: string | number | null;
  children: ComponentChildren;
  sub?: ComponentChildren;
  tone?: "good" | "bad";
}) {
  const { id, label, raw, children, sub, tone } = props;
  return (
    <div class={tone ? `tile ${tone}` : "tile"} data-testid={`tile-${id}`} data-value={raw ?? "null"}>
      <div class="tile-label">{label}</div>
      <div class="tile-value">{children}</div>
      {sub && <div class="tile-sub">{sub}</div>}
    </div>
  );
}

const counts = new Intl.NumberFormat("en-US");
export const count = (n: number) => counts.format(n);

export const ms = (v: number | null) =>
  v === null ? "—" : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;

export const rate = (v: number | null) => (v === null ? "—" : `${(v * 100).toFixed(1)}%`);

/** A label for a group key: "" is "(none)". */
export const groupName = (g: string | null | undefined) => (g ? g : "(none)");

export function Table(props: {
  caption: string;
  head: ComponentChildren[];
  rows: ComponentChildren[][];
  testid?: string;
  empty?: string;
}) {
  const { caption, head, rows, testid, empty = "No data in this range." } = props;
  if (rows.length === 0) return <p class="muted">{empty}</p>;
  return (
    <div class="table-wrap">
      <table data-testid={testid}>
        <caption class="sr">{caption}</caption>
        <thead>
          <tr>
            {head.map((h, i) => (
              <th scope="col" key={i}>
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={i}>
              {r.map((c, j) =>
                j === 0 ? (
                  <th scope="row" key={j}>
                    {c}
                  </th>
                ) : (
                  <td key={j}>{c}</td>
                ),
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** A horizontal bar of `part` out of `whole` (numbers for drawing only). */
export function Bar(props: { part: number; whole: number; label: string; tone?: string }) {
  const { part, whole, label, tone } = props;
  const w = whole > 0 ? Math.max(0, Math.min(100, (part / whole) * 100)) : 0;
  return (
    <div
      class="bar"
      role="meter"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(w)}
    >
      <div class={tone ? `bar-fill ${tone}` : "bar-fill"} style={{ width: `${w}%` }} />
    </div>
  );
}
