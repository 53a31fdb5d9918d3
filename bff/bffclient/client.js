/*
 * spotoken backend-for-frontend client: sign a single-page app's users in
 * with Spotify and call the Web API through spotoken, with no token in
 * JavaScript. No build step, no dependency.
 *
 *   <script src="https://tokens.example/bff/client.js"></script>
 *   const bff = SpotokenBFF.app("my-app");
 *   const me = await bff.session();   // {user, scopes, ...} or null
 *   if (!me) bff.login();
 *   const r = await bff.fetch("v1/me/player/currently-playing");
 *
 * The browser holds only spotoken's HttpOnly session cookie. Every call
 * carries the X-Spotoken-CSRF header, which a page of another origin cannot
 * send. fetch() answers 401 (the session is gone) and 409 (Spotify access
 * must be granted again) by signing in again. See docs/browser-apps.md.
 */
(function (global) {
  "use strict";

  var CSRF_HEADER = "X-Spotoken-CSRF";

  // The server's base URL: where this script came from, without
  // /bff/client.js (a public URL may have a path).
  var script = document.currentScript;
  var defaultBase = script && script.src
    ? script.src.replace(/\/bff\/client\.js(?:[?#].*)?$/, "")
    : global.location.origin;

  function SpotokenError(status, body) {
    var e = new Error((body && body.error_description) || ("spotoken answered " + status));
    e.name = "SpotokenError";
    e.status = status;
    e.code = (body && body.error) || "";
    e.retryAfter = (body && body.retry_after) || 0;
    return e;
  }

  function errorOf(resp) {
    return resp.json().catch(function () { return null; }).then(function (body) {
      throw SpotokenError(resp.status, body);
    });
  }

  // A promise that never settles: the page is navigating away.
  function leaving() { return new Promise(function () {}); }

  function app(name, options) {
    if (typeof name !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
      throw new Error("SpotokenBFF.app: want the app's name in spotoken, got " + name);
    }
    options = options || {};
    var base = (options.base || defaultBase).replace(/\/+$/, "");
    var root = base + "/bff/" + encodeURIComponent(name);

    function call(path, init) {
      init = Object.assign({}, init || {});
      var headers = new Headers(init.headers || {});
      headers.set(CSRF_HEADER, "1");
      init.headers = headers;
      init.credentials = "include";
      init.cache = init.cache || "no-store";
      return global.fetch(root + path, init);
    }

    // login sends the browser through Spotify's consent page and back to
    // returnTo (default: this page). It does not return.
    function login(opts) {
      var returnTo = (opts && opts.returnTo) || global.location.href;
      global.location.assign(root + "/login?return_to=" + encodeURIComponent(returnTo));
      return leaving();
    }

    // session resolves to who is signed in ({user: {id, display_name},
    // scopes, grant_expires_at, session_expires_at, logout_url,
    // token_mediating}), or null when nobody is (401) or the grant is
    // gone (409).
    function session() {
      return call("/session", { method: "GET" }).then(function (resp) {
        if (resp.status === 401 || resp.status === 409) return null;
        if (!resp.ok) return errorOf(resp);
        return resp.json();
      });
    }

    // logout ends this browser's session; with {everywhere: true} it also
    // erases the grant, which ends the user's sessions in every browser.
    function logout(opts) {
      var q = opts && opts.everywhere ? "?erase_grant=true" : "";
      return call("/logout" + q, { method: "POST" }).then(function (resp) {
        if (!resp.ok && resp.status !== 401) return errorOf(resp);
      });
    }

    // fetch calls the Spotify Web API at path ("v1/me/player") through
    // spotoken, as the signed-in user, and resolves to the Response. When
    // the session is gone (401) or Spotify access must be granted again
    // (409), it signs in again instead (the page navigates away).
    function fetch(path, init) {
      path = String(path).replace(/^\/+/, "");
      return call("/api/" + path, init).then(function (resp) {
        if (resp.status === 401 || resp.status === 409) {
          return options.onSignInNeeded ? options.onSignInNeeded(resp) : login();
        }
        return resp;
      });
    }

    // token resolves to {access_token, token_type, expires_in, expires_at,
    // scope} in the token-mediating mode (for the Web Playback SDK's
    // getOAuthToken); never a refresh token.
    function token() {
      return call("/token", { method: "POST" }).then(function (resp) {
        if (resp.status === 401 || resp.status === 409) {
          return options.onSignInNeeded ? options.onSignInNeeded(resp) : login();
        }
        if (!resp.ok) return errorOf(resp);
        return resp.json();
      });
    }

    return { login: login, logout: logout, session: session, fetch: fetch, token: token, base: base, app: name };
  }

  global.SpotokenBFF = { app: app, csrfHeader: CSRF_HEADER };
})(window);
