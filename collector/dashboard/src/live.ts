// The live-update client: a short-lived token from `POST /v1/live/token`, then Server-Sent
// Events from `GET /v1/live?token=...` (`hello`, `update`, `resync`). A collector without live
// updates (404/405 on the token) leaves the page as it is: the state says "unavailable".
import { Api, ApiError, type Dec, type LiveToken } from "./api";

export interface Delta {
  events: number;
  executions: number;
  successes: number;
  failures: number;
  cost_usd: Dec;
  api_calls: number;
  input_tokens: number;
  output_tokens: number;
  unpriced_events: number;
}

export interface RecentEvent {
  id: string;
  ts: string;
  event_type: string;
  provider?: string | null;
  model?: string | null;
  task_type?: string | null;
  agent_id?: string | null;
  cost_usd: Dec | null;
  success?: boolean | null;
}

export interface Update {
  type: "update";
  tenant_id: string;
  at: string;
  commits: number;
  delta: Delta;
  recent: RecentEvent[];
}

export type LiveState = "connecting" | "live" | "unavailable" | "reconnecting";

export interface LiveHandlers {
  state(s: LiveState): void;
  update(u: Update): void;
  /** The server dropped updates: re-read the API. */
  resync(): void;
}

/** Subscribe; returns the function that stops it. */
export function subscribe(api: Api, on: LiveHandlers): () => void {
  let stopped = false;
  // A call, so a check after an `await` reads the current value.
  const isStopped = () => stopped;
  let source: EventSource | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let failures = 0;

  const retry = () => {
    if (isStopped()) return;
    failures += 1;
    on.state("reconnecting");
    timer = setTimeout(open, Math.min(30_000, 1000 * 2 ** Math.min(failures, 5)));
  };

  const open = async () => {
    if (isStopped()) return;
    let token: LiveToken;
    try {
      token = await api.post<LiveToken>("/v1/live/token");
    } catch (e) {
      if (e instanceof ApiError && [404, 405, 501].includes(e.status)) {
        on.state("unavailable");
        return;
      }
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
        on.state("unavailable");
        return;
      }
      retry();
      return;
    }
    if (isStopped()) return;
    source = new EventSource(`/v1/live?token=${encodeURIComponent(token.token)}`);
    source.addEventListener("hello", () => {
      failures = 0;
      on.state("live");
    });
    source.addEventListener("update", (ev) => {
      try {
        on.update(JSON.parse((ev as MessageEvent<string>).data) as Update);
      } catch {
        on.resync();
      }
    });
    source.addEventListener("resync", () => on.resync());
    source.onerror = () => {
      source?.close();
      source = null;
      // The token only opens streams for a minute: take a new one.
      retry();
    };
  };

  on.state("connecting");
  void open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    source?.close();
  };
}
