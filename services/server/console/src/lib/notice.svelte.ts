// One line of feedback at the top of the page (success or failure of the last action).

import { describe } from "./api";

export const notice = $state<{ text: string; kind: "ok" | "error" | "" }>({ text: "", kind: "" });
let timer: ReturnType<typeof setTimeout> | undefined;

export function say(text: string, kind: "ok" | "error" = "ok"): void {
  notice.text = text;
  notice.kind = kind;
  clearTimeout(timer);
  if (kind === "ok") timer = setTimeout(() => (notice.text = ""), 4000);
}

export function fail(err: unknown): void {
  say(describe(err), "error");
}
