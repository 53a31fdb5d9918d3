// The example single-page app: who is signed in and what they are playing,
// through spotoken's backend-for-frontend. No Spotify token ever reaches
// this page; it calls /bff/<app>/api/... with the client's fetch, which adds
// the CSRF header and sends the HttpOnly session cookie.
"use strict";

const $ = (id) => document.getElementById(id);

function show(id, on) { $(id).hidden = !on; }

function showError(message) {
  $("error").textContent = message;
  show("error", Boolean(message));
}

function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// loadClient loads /bff/client.js from spotoken (the meta tag, or the
// server of this page).
function loadClient() {
  const meta = document.querySelector('meta[name="spotoken-url"]');
  const base = (meta && meta.content) || new URL("..", location.href).href;
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = base.replace(/\/+$/, "") + "/bff/client.js";
    s.onload = resolve;
    s.onerror = () => reject(new Error("could not load spotoken's client.js from " + s.src));
    document.head.appendChild(s);
  });
}

// Back from a sign-in that failed: say why, and tidy the address bar.
function takeSignInError() {
  const q = new URLSearchParams(location.search);
  const code = q.get("error");
  if (!code) return;
  showError((q.get("error_description") || "Signing in failed") + " (" + code + ")");
  q.delete("error");
  q.delete("error_description");
  const rest = q.toString();
  history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
}

async function main() {
  takeSignInError();
  try {
    await loadClient();
  } catch (e) {
    show("loading", false);
    showError(e.message);
    return;
  }
  const bff = SpotokenBFF.app(document.documentElement.dataset.app || "demo");

  async function refreshPlaying() {
    const r = await bff.fetch("v1/me/player/currently-playing");
    if (r.status === 204) {
      show("nothing", true);
      show("track-block", false);
    } else if (r.ok) {
      const p = await r.json();
      const item = p.item || {};
      $("track").textContent = item.name || "(unknown track)";
      $("artists").textContent = (item.artists || []).map((a) => a.name).join(", ");
      $("album").textContent = item.album ? item.album.name : "";
      show("nothing", false);
      show("track-block", true);
    } else {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error_description || body.error?.message || "Spotify answered " + r.status);
    }
    $("updated").textContent = "Updated " + new Date().toLocaleTimeString();
  }

  async function guarded(button, fn) {
    if (button) button.disabled = true;
    try {
      await fn();
      showError("");
    } catch (e) {
      showError(e.message);
    } finally {
      if (button) button.disabled = false;
    }
  }

  const me = await bff.session();
  show("loading", false);
  if (!me) {
    show("signed-out", true);
    $("sign-in").addEventListener("click", () => bff.login());
    return;
  }
  const name = me.user.display_name || me.user.id;
  $("avatar").textContent = name.slice(0, 1).toUpperCase();
  $("user-name").textContent = name;
  $("user-id").textContent = "Spotify user " + me.user.id;
  $("scopes").textContent = me.scopes.join(" ");
  $("grant-expires").textContent = when(me.grant_expires_at);
  $("session-ends").textContent = when(me.session_expires_at);
  $("mode").textContent = me.token_mediating ? "token-mediating (the page may ask for access tokens)" : "backend-for-frontend (no token in the page)";
  show("signed-in", true);

  $("refresh").addEventListener("click", (e) => guarded(e.currentTarget, refreshPlaying));
  $("play").addEventListener("click", (e) => guarded(e.currentTarget, async () => {
    const r = await bff.fetch("v1/me/player/play", {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({}),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error_description || body.error?.message || "Spotify answered " + r.status);
    }
    await refreshPlaying();
  }));
  $("sign-out").addEventListener("click", (e) => guarded(e.currentTarget, async () => {
    await bff.logout();
    location.reload();
  }));
  $("sign-out-everywhere").addEventListener("click", (e) => guarded(e.currentTarget, async () => {
    await bff.logout({ everywhere: true });
    location.reload();
  }));

  await guarded(null, refreshPlaying);
  setInterval(() => {
    if (document.visibilityState === "visible") guarded(null, refreshPlaying);
  }, 15000);
}

main();
