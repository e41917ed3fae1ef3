// Who is signed in (GET /api/v1/auth/me) and what their role lets the console offer.

import { ApiError, get, onUnauthorized, post } from "./api";
import type { Me } from "./types";

export const session = $state<{ me: Me | null; checked: boolean }>({ me: null, checked: false });

export function canEdit(): boolean {
  return session.me?.role === "admin" || session.me?.role === "developer";
}

export function isAdmin(): boolean {
  return session.me?.role === "admin";
}

export async function loadMe(): Promise<void> {
  try {
    session.me = await get<Me>("/api/v1/auth/me");
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) throw err;
    session.me = null;
  } finally {
    session.checked = true;
  }
}

export async function signIn(username: string, password: string): Promise<void> {
  await post("/api/v1/auth/sign-in", { username, password });
  await loadMe();
}

export async function signOut(): Promise<void> {
  try {
    await post("/api/v1/auth/sign-out");
  } finally {
    session.me = null;
  }
}

/** Ends every session of the user, this browser's included (their editing locks released). */
export async function signOutEverywhere(): Promise<void> {
  try {
    await post("/api/v1/auth/sign-out-everywhere");
  } finally {
    session.me = null;
  }
}

onUnauthorized(() => {
  session.me = null;
});
