// The date range every panel reads, as RFC 3339 instants the API takes (`from` inclusive, `to`
// exclusive). Day presets are whole UTC days ending with today, so the API reads its daily
// rollups; 24 h is the last 24 whole hours up to the next hour.

export type Preset = "24h" | "7d" | "30d" | "90d" | "custom";

export const PRESETS: { id: Preset; label: string }[] = [
  { id: "24h", label: "24 h" },
  { id: "7d", label: "7 d" },
  { id: "30d", label: "30 d" },
  { id: "90d", label: "90 d" },
  { id: "custom", label: "Custom" },
];

export interface Range {
  from: string;
  to: string;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.000Z$/, "Z");

/** `YYYY-MM-DD` of a UTC instant. */
export const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

export function rangeOf(
  preset: Preset,
  custom: { from: string; to: string },
  now = Date.now(),
): Range | string {
  const tomorrow = Math.floor(now / DAY) * DAY + DAY;
  switch (preset) {
    case "24h": {
      const to = Math.ceil(now / HOUR) * HOUR;
      return { from: iso(to - 24 * HOUR), to: iso(to) };
    }
    case "7d":
      return { from: iso(tomorrow - 7 * DAY), to: iso(tomorrow) };
    case "30d":
      return { from: iso(tomorrow - 30 * DAY), to: iso(tomorrow) };
    case "90d":
      return { from: iso(tomorrow - 90 * DAY), to: iso(tomorrow) };
    case "custom": {
      const from = Date.parse(`${custom.from}T00:00:00Z`);
      const to = Date.parse(`${custom.to}T00:00:00Z`);
      if (Number.isNaN(from) || Number.isNaN(to)) return "Enter both dates.";
      if (to < from) return "The end date is before the start date.";
      return { from: iso(from), to: iso(to + DAY) };
    }
  }
}

/** The last 24 whole hours. */
export const last24h = (now = Date.now()) => rangeOf("24h", { from: "", to: "" }, now) as Range;

/** The last 12 calendar months (UTC) up to this one, for the monthly trend. */
export function lastMonths(now = Date.now()): Range {
  const d = new Date(now);
  const to = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  const from = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 11, 1);
  return { from: iso(from), to: iso(to) };
}

const months = new Map<string, Intl.DateTimeFormat>();

/** `YYYY-MM` of the calendar month holding instant `t` in time zone `tz`. */
export function monthIn(t: string, tz: string): string {
  let f = months.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", { timeZone: tz, year: "numeric", month: "2-digit" });
    months.set(tz, f);
  }
  const parts = f.formatToParts(new Date(t));
  const part = (k: string) => parts.find((p) => p.type === k)?.value ?? "";
  return `${part("year")}-${part("month")}`;
}

/** Whether the range reaches the present (live updates add to it). */
export const includesNow = (r: Range, now = Date.now()) => Date.parse(r.to) > now;

/** The time zones to choose from for display: UTC, this browser's zone and `current` first,
 * then (`all`) every zone the browser knows. */
export function timeZones(current: string, all: boolean): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (k: string) => string[] };
  const zones = all ? (intl.supportedValuesOf?.("timeZone") ?? []) : [];
  const local = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return Array.from(new Set(["UTC", local, current, ...zones]));
}

const formats = new Map<string, Intl.DateTimeFormat>();

function format(tz: string, kind: "time" | "date"): Intl.DateTimeFormat {
  const k = `${tz}|${kind}`;
  let f = formats.get(k);
  if (!f) {
    f =
      kind === "time"
        ? new Intl.DateTimeFormat("en-GB", {
            timeZone: tz,
            year: "numeric",
            month: "short",
            day: "2-digit",
            hour: "2-digit",
            minute: "2-digit",
            second: "2-digit",
            hourCycle: "h23",
          })
        : new Intl.DateTimeFormat("en-GB", {
            timeZone: tz,
            year: "numeric",
            month: "short",
            day: "2-digit",
          });
    formats.set(k, f);
  }
  return f;
}

/** An instant shown in `tz`. */
export const showTime = (t: string, tz: string) => format(tz, "time").format(new Date(t));
export const showDate = (t: string, tz: string) => format(tz, "date").format(new Date(t));

const parts = new Map<string, Intl.DateTimeFormat>();

/** Day of week (0 = Monday) and hour of an instant in `tz`. */
export function weekdayHour(ms: number, tz: string): [number, number] {
  let f = parts.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      weekday: "short",
      hour: "numeric",
      hourCycle: "h23",
    });
    parts.set(tz, f);
  }
  let wd = 0;
  let h = 0;
  for (const p of f.formatToParts(new Date(ms))) {
    if (p.type === "weekday") wd = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].indexOf(p.value);
    if (p.type === "hour") h = Number(p.value) % 24;
  }
  return [wd, h];
}
