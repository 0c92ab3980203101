// The credential the page reads the API with: kept in sessionStorage (gone with the tab), or
// taken once from a `#token=...&tenant=...` fragment, which is then removed from the URL.
import type { Credentials } from "./api";

const KEY = "agenttally.credentials";

export function load(): Credentials | null {
  const fromFragment = takeFragment();
  if (fromFragment) {
    save(fromFragment);
    return fromFragment;
  }
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const c = JSON.parse(raw) as Partial<Credentials>;
    return typeof c.token === "string" && c.token
      ? { token: c.token, tenant: typeof c.tenant === "string" ? c.tenant : "" }
      : null;
  } catch {
    return null;
  }
}

export function save(c: Credentials): void {
  try {
    sessionStorage.setItem(KEY, JSON.stringify(c));
  } catch {
    // Storage refused (private mode): the credential lasts as long as the page.
  }
}

export function clear(): void {
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // Nothing stored.
  }
}

function takeFragment(): Credentials | null {
  const hash = window.location.hash.replace(/^#/, "");
  if (!hash) return null;
  const p = new URLSearchParams(hash);
  const token = p.get("token");
  if (!token) return null;
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  return { token, tenant: p.get("tenant") ?? "" };
}
