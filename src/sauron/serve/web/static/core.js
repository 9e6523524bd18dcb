// Sauron operator pages: a small single-page app over the JSON API (/api/docs), without a
// build step or a library. Everything shown from the server is inserted as text, never as HTML.
//
// core.js holds what every page shares: el() to build DOM, api() to call the server,
// errorText(), dropZone(), largestOffer(), toast(), personName() (a person's name as written, from the
// id), the session (log-in, log-out), the live event stream and the router. Each page lives in a file of its own (live.js, watchlist.js, ...),
// loaded by a <script src=... defer> tag in index.html after core.js.
//
// Adding a page: make static/NAME.js, add its script tag to index.html, and in it call
//
//   registerPage("visitors", {
//     view: async (show, args) => { show(el("h2", { text: "Visitors" }), ...); },
//     nav: "Visitors",     // the menu link's text; leave out for a page without one
//     order: 45,           // place in the menu (live 10, watchlist 20, alerts 30,
//                          // history 40, search 50, admin 80, account 90)
//     adminOnly: false,    // true: the menu link is shown to admins only
//     navFor: "live",      // (optional) which menu link is lit while this page is shown
//     badge: "my-count",   // (optional) id of a hidden count badge inside the link
//   });
//
// The page is then shown for "#/visitors/a/b?x=1" with args ["a", "b"] (still
// URI-encoded) and params (a URLSearchParams of what follows "?"): view(show, args, params).
// A view builds its nodes and hands them to show(...nodes): show() draws only if the
// user has not moved on to another page meanwhile (a slow page must not replace the next).
// onEvent("alert", (data) => ...) subscribes to a type of the server's event stream
// (/api/events: "cameras", "alert"); data is the parsed JSON.
"use strict";

const state = { me: null, events: null, cameras: [], alerts: [], unseen: 0, people: {} };
const pages = new Map();
const eventHandlers = new Map();

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// A person's name as written, from the id sightings and alerts carry (state.people is
// refreshed by loadPeople(): at log-in and after each change of the watchlist).
function personName(id) { return (id && state.people[id]) || id; }

async function loadPeople() {
  const people = await api("/api/people");
  state.people = Object.fromEntries(people.map(p => [p.name, p.display_name]));
  return people;
}

function fmtTime(ts) { return ts ? new Date(ts * 1000).toLocaleString() : ""; }

// A distance as an operator reads it: 100 % at 0, 50 % at the match tolerance (a face
// further away is not named), 0 % at twice it (the server's routes_history.confidence).
function confidenceOf(d, tolerance) {
  if (d === null || d === undefined || !tolerance) return null;
  return Math.round(Math.max(0, Math.min(1, 1 - d / (2 * tolerance))) * 100);
}

function fmtConfidence(c) { return c === null || c === undefined ? "" : `${Math.round(c)} %`; }

class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : (detail && detail.message) || "request failed");
    this.status = status;
    this.detail = detail;
  }
}

async function api(path, opts = {}) {
  const headers = { "X-Requested-With": "sauron", ...(opts.headers || {}) };
  let body = opts.body;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const resp = await fetch(path, { method: opts.method || "GET", headers, body,
                                   credentials: "same-origin" });
  if (resp.status === 401 && path !== "/api/login") { showLogin(); throw new ApiError(401, "log in"); }
  if (resp.status === 204) return null;
  const data = resp.headers.get("content-type")?.includes("json") ? await resp.json() : null;
  if (!resp.ok) throw new ApiError(resp.status, data ? data.detail : resp.statusText);
  return data;
}

function errorText(err) {
  if (err instanceof ApiError && err.detail && err.detail.refused) {
    return err.detail.message + ":\n" + err.detail.refused.map(r => r.reason).join("\n");
  }
  if (err instanceof ApiError && Array.isArray(err.detail)) {
    return err.detail.map(d => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
  }
  return err.message || String(err);
}

function dropZone(label, onFiles) {
  const input = el("input", { type: "file", accept: "image/*", multiple: true, hidden: true });
  const zone = el("div", { class: "drop" }, label, " ", el("button", { type: "button", onclick: () => input.click(), text: "choose files" }), input);
  input.addEventListener("change", () => onFiles([...input.files]));
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    onFiles([...ev.dataTransfer.files]);
  });
  zone.input = input;
  return zone;
}

// Photos refused only for holding several faces: a button to send them again taking the
// largest face of each (retry), or null.
function largestOffer(err, retry) {
  const refused = err instanceof ApiError && err.detail && err.detail.refused;
  if (!refused || !refused.every(r => r.several_faces)) return null;
  return el("button", { type: "button", class: "largest", text: "Use the largest face in each photo", onclick: retry });
}

// A pop-up for ms milliseconds; node is its content (class "toast" added). Pop-ups sit in
// a strip under the menu, never over the page; at most MAX_TOASTS show at once, the
// others only count in one line ("5 more", a link to moreHref).
const MAX_TOASTS = 3;
let hiddenToasts = 0;

function toast(node, ms = 15000, moreHref = "#/alerts") {
  const box = document.getElementById("toasts");
  node.classList.add("toast");
  node.append(el("button", { type: "button", class: "close", title: "dismiss", text: "×",
                             onclick: () => { node.remove(); } }));
  box.prepend(node);
  const shown = box.querySelectorAll(".toast");
  for (const old of [...shown].slice(MAX_TOASTS)) { old.remove(); hiddenToasts += 1; }
  let more = document.getElementById("toast-more");
  if (hiddenToasts) {
    if (!more) {
      more = el("a", { id: "toast-more", href: moreHref, onclick: () => { hiddenToasts = 0; more.remove(); } });
      box.append(more);
    }
    more.textContent = `${hiddenToasts} more`;
  }
  setTimeout(() => node.remove(), ms);
  return node;
}

// --- pages and the menu ----------------------------------------------------------------

function registerPage(name, opts) {
  if (pages.has(name)) throw new Error(`page ${name} registered twice`);
  pages.set(name, { name, order: 100, ...opts });
}

function onEvent(type, handler) {
  if (!eventHandlers.has(type)) eventHandlers.set(type, []);
  eventHandlers.get(type).push(handler);
}

function buildNav() {
  const nav = document.getElementById("nav");
  const entries = [...pages.values()].filter(p => p.nav).sort((a, b) => a.order - b.order);
  nav.replaceChildren(...entries.map(p => el("a",
    { href: `#/${p.name}`, "data-nav": p.name, class: p.adminOnly ? "admin-only" : null },
    p.nav, p.badge ? [" ", el("span", { id: p.badge, class: "badge", hidden: true, text: "0" })] : null)));
}

// --- session ---------------------------------------------------------------------------

function showLogin() {
  state.me = null;
  if (state.events) { state.events.close(); state.events = null; }
  document.getElementById("top").hidden = true;
  document.getElementById("view").replaceChildren();
  document.getElementById("login").hidden = false;
}

async function start() {
  try {
    state.me = await api("/api/me");
  } catch (err) {
    return;
  }
  document.getElementById("login").hidden = true;
  document.getElementById("top").hidden = false;
  document.getElementById("who").textContent = `${state.me.username} (${state.me.role})`;
  document.body.classList.toggle("is-admin", state.me.role === "admin");
  // names first: an alert pushed at once is shown with its person's name
  try { await loadPeople(); } catch (e) { /* the pages show ids until the next load */ }
  openEvents();
  route();
}

function openEvents() {
  if (state.events) state.events.close();
  const es = new EventSource("/api/events");
  for (const [type, handlers] of eventHandlers) {
    es.addEventListener(type, (ev) => {
      const data = JSON.parse(ev.data);
      handlers.forEach(h => h(data));
    });
  }
  state.events = es;
}

// --- routing ---------------------------------------------------------------------------

function render(...nodes) { document.getElementById("view").replaceChildren(...nodes.filter(Boolean)); }

let routeSeq = 0;

async function route() {
  if (!state.me) return;
  // Views load data before they draw: a slow view of an earlier route must not replace
  // the page the user has moved on to.
  const seq = ++routeSeq;
  const show = (...nodes) => { if (seq === routeSeq) render(...nodes); };
  const [path, query] = (location.hash || "#/live").slice(2).split("?");
  const parts = path.split("/");
  const page = pages.get(parts[0]) || pages.get("live");
  const lit = page.navFor || page.name;
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.dataset.nav === lit));
  try {
    await page.view(show, parts.slice(1), new URLSearchParams(query || ""));
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) show(el("p", { class: "error", text: errorText(e) }));
  }
}

function boot() {
  buildNav();
  // the pop-up strip's height, for pages that size themselves to the screen (--toasts-h)
  const box = document.getElementById("toasts");
  new ResizeObserver(() => document.documentElement.style.setProperty("--toasts-h", `${box.offsetHeight}px`)).observe(box);
  document.getElementById("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const out = document.getElementById("login-error");
    out.textContent = "";
    try {
      await api("/api/login", { method: "POST",
                                body: { username: form.get("username"), password: form.get("password") } });
      ev.target.reset();
      await start();
    } catch (err) {
      out.textContent = errorText(err);
    }
  });
  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("/api/logout", { method: "POST" }); } finally { showLogin(); }
  });
  window.addEventListener("hashchange", route);
  start().then(() => { if (!state.me) showLogin(); });
}

// Deferred scripts all run before DOMContentLoaded: every page is registered by then.
document.addEventListener("DOMContentLoaded", boot);
