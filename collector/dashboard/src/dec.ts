// Exact decimal strings: sums and rounding for display without floats (money stays exact).

interface Fixed {
  units: bigint;
  scale: number;
}

function parse(s: string): Fixed {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(s.trim());
  if (!m) throw new Error(`not a decimal string: ${s}`);
  const frac = m[3] ?? "";
  const units = BigInt((m[2] ?? "0") + frac);
  return { units: m[1] ? -units : units, scale: frac.length };
}

function rescale(f: Fixed, scale: number): bigint {
  return f.units * 10n ** BigInt(scale - f.scale);
}

function show(units: bigint, scale: number): string {
  const neg = units < 0n;
  const digits = (neg ? -units : units).toString().padStart(scale + 1, "0");
  let out = digits;
  if (scale > 0) {
    const frac = digits.slice(-scale).replace(/0+$/, "");
    out = frac ? `${digits.slice(0, -scale)}.${frac}` : digits.slice(0, -scale);
  }
  return neg && out !== "0" ? `-${out}` : out;
}

/** a + b, exactly. */
export function add(a: string, b: string): string {
  const x = parse(a);
  const y = parse(b);
  const scale = Math.max(x.scale, y.scale);
  return show(rescale(x, scale) + rescale(y, scale), scale);
}

/** The sum of decimal strings ("0" when empty). */
export function sum(values: string[]): string {
  return values.reduce(add, "0");
}

/** `s` rounded half away from zero to `places` decimals, with every place written. */
export function round(s: string, places: number): string {
  const f = parse(s);
  let units = f.units;
  if (f.scale > places) {
    const div = 10n ** BigInt(f.scale - places);
    const neg = units < 0n;
    const abs = neg ? -units : units;
    let q = abs / div;
    if ((abs % div) * 2n >= div) q += 1n;
    units = neg ? -q : q;
  } else {
    units = rescale(f, places);
  }
  const neg = units < 0n;
  const digits = (neg ? -units : units).toString().padStart(places + 1, "0");
  const int = places > 0 ? digits.slice(0, -places) : digits;
  const frac = places > 0 ? "." + digits.slice(-places) : "";
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const zero = /^[0,.]*$/.test(grouped + frac);
  return (neg && !zero ? "-" : "") + grouped + frac;
}

/** Compare a with b: -1, 0 or 1. */
export function cmp(a: string, b: string): number {
  const x = parse(a);
  const y = parse(b);
  const scale = Math.max(x.scale, y.scale);
  const d = rescale(x, scale) - rescale(y, scale);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

/** US dollars for display: cents, or 4 places under a dollar so small costs do not read 0. */
export function usd(s: string): string {
  const small = cmp(s, "1") < 0 && cmp(s, "-1") > 0 && cmp(s, "0") !== 0;
  const r = round(s, small ? 4 : 2);
  return r.startsWith("-") ? `-$${r.slice(1)}` : `$${r}`;
}

/** A percentage string (already ×100) to one place. */
export function pct(s: string): string {
  return `${round(s, 1)}%`;
}

/** A 0–1 rate string as a percentage to one place. */
export function ratePct(s: string): string {
  const f = parse(s);
  return pct(show(f.units * 100n, f.scale));
}
