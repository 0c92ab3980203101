// The one API client of the page: every figure it shows comes from the collector's public read
// API, with the credential the user entered (`Authorization: Bearer ...`).

/** A decimal string (money, rates): never parsed into a float for display. */
export type Dec = string;

export interface Credentials {
  /** An API key or a JWT, as pasted. */
  token: string;
  /** The tenant to read with a platform credential; "" for a tenant's own credential. */
  tenant: string;
}

export interface Summary {
  tenant_id: string;
  from: string;
  to: string;
  granularity: "hour" | "day";
  executions: number;
  successes: number;
  failures: number;
  executions_by_type: Record<string, number>;
  success_rate: number | null;
  cost_usd: Dec;
  unpriced_events: number;
  api_calls: number;
  api_calls_by_provider: Record<string, number>;
  spend_by_provider: Record<string, { cost_usd: Dec; unpriced_events: number; tokens: number }>;
  tokens: Record<string, number>;
  avg_duration_ms: number | null;
  p95_duration_ms: number | null;
  p95_queue_ms: number | null;
}

export interface Point {
  t: string;
  group: string | null;
  value: number | Dec | null;
  unpriced_events?: number;
}

export interface Series {
  tenant_id: string;
  from: string;
  to: string;
  interval: "hour" | "day" | "month";
  tz: string;
  points: Point[];
}

export interface Figures {
  tasks: number;
  successful_tasks: number;
  compared_tasks: number;
  actual_unpriced: number;
  baseline_unpriced: number;
  unpriced_tokens: number;
  estimated_tasks: number;
  actual_usd: Dec;
  baseline_usd: Dec;
  savings_usd: Dec;
  savings_percent: Dec | null;
  successful_actual_usd: Dec;
  successful_baseline_usd: Dec;
  successful_savings_usd: Dec;
  successful_savings_percent: Dec | null;
  cost_per_successful_task: Dec | null;
}

export interface Savings extends Figures {
  tenant_id: string;
  from: string;
  to: string;
  baseline: string;
  by_provider: Record<string, Figures>;
  by_task_type: Record<string, Figures>;
  by_month: Record<string, Figures>;
}

export interface Activity {
  executions: number;
  failures: number;
  api_calls: number;
  cost_usd: Dec;
  unpriced_events: number;
  tokens: number;
}

export interface Peaks {
  tenant_id: string;
  from: string;
  to: string;
  metric: string;
  tz: string;
  by_hour_of_day: (Activity & { hour: number })[];
  by_day_of_week: (Activity & { day: string })[];
  busiest_hours_of_day: number[];
  busiest_days_of_week: string[];
  top_hours: (Activity & { t: string })[];
}

export interface Candidate {
  provider: string;
  model: string;
  tasks: number;
  successes: number;
  success_rate: Dec;
  cost_usd: Dec;
  costed_tasks: number;
  avg_cost_usd: Dec | null;
  eligible: boolean;
}

export interface TaskTypeAdvice {
  task_type: string;
  tasks: number;
  current_avg_cost_usd: Dec | null;
  best_success_rate: Dec | null;
  recommended: Candidate | null;
  projected_monthly_saving_usd: Dec | null;
  reason?: string | null;
  candidates: Candidate[];
}

export interface Budget {
  month: string;
  monthly_budget_usd: Dec;
  month_to_date_usd: Dec;
  projected_usd: Dec;
  projected_percent_of_budget: Dec;
  unpriced_events: number;
  alert: boolean;
}

export interface Recommendations {
  tenant_id: string;
  from: string;
  to: string;
  margin: Dec;
  min_tasks: number;
  by_task_type: TaskTypeAdvice[];
  projected_monthly_saving_usd: Dec;
  budget: Budget | null;
}

export interface MetricUsage {
  metric: string;
  used: Dec;
  limit: Dec | null;
  percent_used: Dec | null;
  projected: Dec;
  projected_overage_usd: Dec;
}

export interface TierCost {
  name: string;
  monthly_price_usd: Dec;
  projected_overage_usd: Dec;
  projected_total_usd: Dec;
}

export interface BillingUsage {
  tenant_id: string;
  /** The IANA time zone of the periods. */
  tz: string;
  period: string;
  period_start: string;
  period_end: string;
  tier: string | null;
  tier_source: string;
  monthly_price_usd: Dec | null;
  usage: MetricUsage[];
  unpriced_events: number;
  projected_overage_usd: Dec;
  projected_total_usd: Dec;
  history: {
    period: string;
    executions: number;
    tokens: number;
    cost_usd: Dec;
    unpriced_events: number;
    overage_usd: Dec;
  }[];
  recommended_tier: TierCost | null;
  tier_costs: TierCost[];
}

export interface LiveToken {
  token: string;
  tenant_id: string;
  expires_at: string;
}

/** An error answer of the API: `{"error": {"code", "message"}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export type Params = Record<string, string | number | undefined>;

export class Api {
  constructor(readonly cred: Credentials) {}

  /** A same-origin URL of `path` with `params` (and the tenant of a platform credential). */
  url(path: string, params: Params = {}): string {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== "") q.set(k, String(v));
    }
    if (this.cred.tenant) q.set("tenant_id", this.cred.tenant);
    const s = q.toString();
    return s ? `${path}?${s}` : path;
  }

  private async send(method: string, path: string, params: Params): Promise<Response> {
    let resp: Response;
    try {
      resp = await fetch(this.url(path, params), {
        method,
        headers: { Authorization: `Bearer ${this.cred.token}` },
        credentials: "omit",
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "network", `the collector did not answer (${String(e)})`);
    }
    if (!resp.ok) {
      let code = `http_${resp.status}`;
      let message = resp.statusText || `HTTP ${resp.status}`;
      try {
        const body = (await resp.json()) as { error?: { code?: string; message?: string } };
        if (body.error?.code) code = body.error.code;
        if (body.error?.message) message = body.error.message;
      } catch {
        // Not a JSON error body: keep the status line.
      }
      throw new ApiError(resp.status, code, message);
    }
    return resp;
  }

  async get<T>(path: string, params: Params = {}): Promise<T> {
    return (await (await this.send("GET", path, params)).json()) as T;
  }

  /** The `format=csv` answer, byte for byte. */
  async csv(path: string, params: Params = {}): Promise<Blob> {
    return (await this.send("GET", path, { ...params, format: "csv" })).blob();
  }

  async post<T>(path: string, params: Params = {}): Promise<T> {
    return (await (await this.send("POST", path, params)).json()) as T;
  }
}
