// Helpers shared by the entry-point screens: the form's text fields ↔ the API's body.

import { parseObject } from "./format";
import type { Entry, Func } from "./types";

export interface EntryForm {
  id: string;
  funcId: string;
  kwargs: string;
  apiAuth: string;
  apiAuthId: string;
  /** The API auth as loaded: secrets are never sent back, so an unchanged one is not re-sent. */
  apiAuthLoaded: string;
  throttling: string;
  expireTime: string;
  isDisabled: boolean;
  tags: string;
  note: string;
  cronExpr: string;
  timezone: string;
  misfirePolicy: string;
  overlapPolicy: string;
}

export function emptyForm(): EntryForm {
  return { id: "", funcId: "", kwargs: "{}", apiAuth: "", apiAuthId: "", apiAuthLoaded: "", throttling: "", expireTime: "", isDisabled: false,
    tags: "", note: "", cronExpr: "*/5 * * * *", timezone: "", misfirePolicy: "fireOnce", overlapPolicy: "skip" };
}

const pretty = (v: unknown) => (v === null || v === undefined ? "" : JSON.stringify(v, null, 2));

function localTime(epoch: number | null | undefined): string {
  if (!epoch) return "";
  const d = new Date(epoch * 1000 - new Date().getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

export function formOf(e: Entry): EntryForm {
  return { id: e.id, funcId: e.funcId, kwargs: pretty(e.kwargs ?? {}), apiAuth: pretty(e.apiAuth), apiAuthId: e.apiAuthId ?? "",
    apiAuthLoaded: pretty(e.apiAuth) + "|" + (e.apiAuthId ?? ""),
    throttling: pretty(e.throttling), expireTime: localTime(e.expireTime), isDisabled: !!e.isDisabled,
    tags: (e.tags ?? []).join(", "), note: e.note ?? "", cronExpr: e.cronExpr ?? "", timezone: e.timezone ?? "",
    misfirePolicy: e.misfirePolicy ?? "fireOnce", overlapPolicy: e.overlapPolicy ?? "skip" };
}

/** The body of a create (no id given → generated) or PATCH from the form. */
export function bodyOf(f: EntryForm, kind: "sync" | "async" | "cron", creating: boolean): Record<string, unknown> {
  const body: Record<string, unknown> = {
    funcId: f.funcId,
    kwargs: parseObject(f.kwargs, "kwargs"),
    expireTime: f.expireTime ? new Date(f.expireTime).getTime() / 1000 : null,
    isDisabled: f.isDisabled,
    tags: f.tags.split(",").map((t) => t.trim()).filter(Boolean),
    note: f.note || null,
  };
  if (creating && f.id.trim()) body.id = f.id.trim();
  if (kind === "cron") {
    Object.assign(body, { cronExpr: f.cronExpr, misfirePolicy: f.misfirePolicy, overlapPolicy: f.overlapPolicy });
    if (f.timezone) body.timezone = f.timezone;
  } else {
    const unchanged = !creating && `${f.apiAuth}|${f.apiAuthId}` === f.apiAuthLoaded;
    if (unchanged) {
      /* keep the stored auth and its secrets */
    } else if (f.apiAuthId.trim()) body.apiAuthId = f.apiAuthId.trim();
    else if (f.apiAuth.trim()) body.apiAuth = parseObject(f.apiAuth, "API auth");
    else if (!creating) body[f.apiAuthLoaded.endsWith("|") ? "apiAuth" : "apiAuthId"] = null;
    body.throttling = f.throttling.trim() ? parseObject(f.throttling, "throttling") : null;
  }
  return body;
}

/** kwargs pre-filled from a func's signature: every parameter supplied by the caller. */
export function callerKwargs(func: Func | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(func?.kwargsSpec ?? {})) out[name] = "INPUT_BY_CALLER";
  return out;
}

/** A curl command that calls the entry: the caller's kwargs as placeholders. */
export function curlOf(e: Entry, kind: "sync" | "async", origin: string): string {
  const inputs: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e.kwargs ?? {})) if (v === "INPUT_BY_CALLER" || v === "FROM_PARAMETER") inputs[k] = `<${k}>`;
  const body = JSON.stringify({ kwargs: inputs });
  const auth = e.apiAuth as { type?: string; location?: string; field?: string } | null | undefined;
  const header = auth?.type === "fixedField" && auth.location === "header" ? ` -H '${auth.field}: <secret>'` : "";
  const basic = auth?.type === "httpBasic" ? " -u '<user>:<password>'" : auth?.type === "httpDigest" ? " --digest -u '<user>:<password>'" : "";
  return `curl -X POST '${origin}/api/v1/${kind}/${e.id}' -H 'Content-Type: application/json'${header}${basic} -d '${body}'`;
}
