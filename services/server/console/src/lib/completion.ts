// Completion for user scripts: the `DFF.` members, the `_DFF_*` names a task sees, other
// scripts' modules (`import demo__other`) and their published functions (`demo__other.func`).

import type { Completion, CompletionContext, CompletionResult } from "@codemirror/autocomplete";
import type { Func } from "./types";

const DFF_MEMBERS: [string, string][] = [
  ["API", "decorator: publish a function (title, category, tags, timeout, queue, cache_result…)"],
  ["RESP", "a response with status code, content type, headers"],
  ["RESP_FILE", "a file as the response"],
  ["RESP_LARGE_DATA", "large data served once from a URL"],
  ["REDIRECT", "a redirect response"],
  ["CACHE", "Redis cache helper (get/set/delete…)"],
  ["STORE", "persistent key-value store"],
  ["ENV", "env variables: DFF.ENV('name')"],
  ["CONN", "a connector client: DFF.CONN('id')"],
  ["SRC", "a connector client (DataFlux Func name)"],
  ["FUNC", "call another published function as a child task"],
  ["THREAD", "run work in threads"],
  ["LOG", "print a line into the task's output"],
  ["RSRC", "path of a file in the resource directory"],
  ["SYNC_API", "sync API helper"],
  ["ASYNC_API", "async API helper"],
  ["CRON_JOB", "cron job helper"],
];

const DFF_NAMES: [string, string][] = [
  ["_DFF_TASK_ID", "this task's id"],
  ["_DFF_ROOT_TASK_ID", "the root task of the call chain"],
  ["_DFF_FUNC_ID", "this function's id"],
  ["_DFF_FUNC_NAME", "this function's name"],
  ["_DFF_FUNC_CHAIN", "the call chain"],
  ["_DFF_SCRIPT_ID", "this script's id"],
  ["_DFF_SCRIPT_SET_ID", "this script set's id"],
  ["_DFF_ORIGIN", "syncAPI, asyncAPI, cronJob, direct, child…"],
  ["_DFF_ORIGIN_ID", "the entry point's id"],
  ["_DFF_HTTP_REQUEST", "the HTTP request of a sync/async API call"],
  ["_DFF_QUEUE", "the queue the task ran from"],
  ["_DFF_ATTEMPT", "the attempt number"],
  ["_DFF_TRIGGER_TIME", "when the task was triggered (s)"],
  ["_DFF_TRIGGER_TIME_MS", "when the task was triggered (ms)"],
  ["_DFF_START_TIME", "when the task started (s)"],
  ["_DFF_START_TIME_MS", "when the task started (ms)"],
  ["_DFF_ETA", "the task's eta"],
  ["_DFF_DELAY", "the task's delay"],
  ["_DFF_CRON_EXPR", "the cron expression of a cron fire"],
  ["_DFF_CRON_JOB_DELAY", "the cron fire's delay"],
  ["_DFF_CRON_JOB_EXEC_MODE", "how the cron job fired"],
  ["_DFF_CRONTAB", "the cron expression (DataFlux Func name)"],
  ["_DFF_DEBUG", "true in a draft run"],
];

/** What completion knows about the other scripts: script id → its published function names. */
export type ScriptIndex = Map<string, { name: string; detail: string }[]>;

export function makeSource(index: () => ScriptIndex) {
  return (ctx: CompletionContext): CompletionResult | null => {
    const member = ctx.matchBefore(/[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z0-9_]*$/);
    if (member) {
      const dot = member.text.indexOf(".");
      const owner = member.text.slice(0, dot);
      const from = member.from + dot + 1;
      if (owner === "DFF") {
        const options: Completion[] = DFF_MEMBERS.map(([label, info]) => ({ label, info, type: "property", detail: "DFF" }));
        return { from, options, validFor: /^[A-Za-z0-9_]*$/ };
      }
      const funcs = index().get(owner);
      if (funcs) {
        const options: Completion[] = funcs.map((f) => ({ label: f.name, detail: f.detail, type: "function" }));
        return { from, options, validFor: /^[A-Za-z0-9_]*$/ };
      }
      return null;
    }
    const word = ctx.matchBefore(/[A-Za-z_][A-Za-z0-9_]*$/);
    if (!word || (word.from === word.to && !ctx.explicit)) return null;
    const options: Completion[] = [
      { label: "DFF", type: "variable", info: "the fluxfunc script API" },
      ...DFF_NAMES.map(([label, info]) => ({ label, info, type: "constant" })),
      ...[...index().keys()].map((id) => ({ label: id, type: "namespace", detail: "script" })),
    ];
    return { from: word.from, options, validFor: /^[A-Za-z0-9_]*$/ };
  };
}

/** A kwargs object pre-filled from a function's signature (the catalogue's `args` and
 * `kwargsSpec`): required → null, a default as its JSON value (Python literals read as JSON,
 * anything else as its source text). */
export function kwargsTemplate(func: Pick<Func, "args" | "kwargsSpec">): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const names = [...(func.args ?? []), ...Object.keys(func.kwargsSpec ?? {})];
  for (const name of names) {
    if (name in out) continue;
    const spec = func.kwargsSpec?.[name] ?? {};
    out[name] = spec.default === undefined || spec.default === null ? null : pyLiteral(spec.default);
  }
  return out;
}

function pyLiteral(text: string): unknown {
  const js = text.replace(/\bTrue\b/g, "true").replace(/\bFalse\b/g, "false").replace(/\bNone\b/g, "null").replace(/'/g, '"');
  try {
    return JSON.parse(js);
  } catch {
    return text;
  }
}
