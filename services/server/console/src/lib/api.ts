// The one way the console talks to the Server: JSON in the DataFlux Func envelope, the session
// cookie sent by the browser (same origin), errors thrown as ApiError with the envelope's fields.

export interface PageInfo {
  limit: number;
  count: number;
  nextCursor: string | null;
}

export class ApiError extends Error {
  status: number;
  reason: string;
  detail: unknown;
  constructor(status: number, reason: string, message: string, detail: unknown) {
    super(message || reason || `HTTP ${status}`);
    this.status = status;
    this.reason = reason;
    this.detail = detail;
  }
}

type Listener = (err: ApiError) => void;
const unauthorizedListeners: Listener[] = [];

/** Called when any call answers 401 (the session ended): the app shows the sign-in screen. */
export function onUnauthorized(fn: Listener): void {
  unauthorizedListeners.push(fn);
}

export interface Answer<T> {
  data: T;
  pageInfo?: PageInfo;
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<Answer<T>> {
  const init: RequestInit = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, init);
  let parsed: Record<string, unknown> = {};
  try {
    parsed = await resp.json();
  } catch {
    parsed = {};
  }
  if (!resp.ok || parsed.ok === false) {
    const err = new ApiError(resp.status, String(parsed.reason ?? ""), String(parsed.message ?? ""), parsed.detail);
    if (resp.status === 401 && !path.startsWith("/api/v1/auth/")) unauthorizedListeners.forEach((fn) => fn(err));
    throw err;
  }
  return { data: parsed.data as T, pageInfo: parsed.pageInfo as PageInfo | undefined };
}

export async function get<T>(path: string): Promise<T> {
  return (await call<T>("GET", path)).data;
}

export async function post<T>(path: string, body?: unknown): Promise<T> {
  return (await call<T>("POST", path, body ?? {})).data;
}

export async function patch<T>(path: string, body: unknown): Promise<T> {
  return (await call<T>("PATCH", path, body)).data;
}

export async function del<T>(path: string): Promise<T> {
  return (await call<T>("DELETE", path)).data;
}

/** A query string from the given values, leaving out empty ones. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

export const enc = encodeURIComponent;

/** The message to show for any failure. */
export function describe(err: unknown): string {
  if (err instanceof ApiError) return `${err.status} ${err.reason ? err.reason + ": " : ""}${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

/** Every item of a paged list (following pageInfo.nextCursor), at most `max`. */
export async function listAll<T>(path: string, max = 5000): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  const sep = path.includes("?") ? "&" : "?";
  do {
    const page: Answer<T[]> = await call<T[]>("GET", `${path}${sep}limit=500${cursor ? `&cursor=${enc(cursor)}` : ""}`);
    out.push(...page.data);
    cursor = page.pageInfo?.nextCursor ?? null;
  } while (cursor && out.length < max);
  return out;
}
