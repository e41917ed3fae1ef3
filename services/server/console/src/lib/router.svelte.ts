// Client-side routes under /console/ (the Server answers index.html for each of them).

export const BASE = "/console/";

function current(): string {
  const p = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "";
  return p.replace(/\/+$/, "");
}

export const route = $state({ path: current(), search: location.search });

/** Go to a console path (e.g. "scripts/demo__x"), adding a history entry. */
export function navigate(path: string, replace = false): void {
  const url = BASE + path.replace(/^\/+/, "");
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route.path = current();
  route.search = location.search;
}

window.addEventListener("popstate", () => {
  route.path = current();
  route.search = location.search;
});

/** The console route's segments: "scripts/a__b" → ["scripts", "a__b"]. */
export function segments(path: string): string[] {
  return path.split("/").filter(Boolean).map(decodeURIComponent);
}

/** An href for a console path; links are handled by `link` so they do not reload. */
export function href(path: string): string {
  return BASE + path;
}

/** A click handler for <a href> inside the console: same-tab plain clicks stay client-side. */
export function link(event: MouseEvent): void {
  const a = (event.currentTarget as HTMLAnchorElement | null) ?? null;
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const target = a.getAttribute("href") ?? "";
  if (!target.startsWith(BASE)) return;
  event.preventDefault();
  navigate(target.slice(BASE.length));
}
