// Sauron operator pages: one small single-page app over the JSON API (/api/docs).
// Everything shown from the server is inserted as text, never as HTML.
"use strict";

const state = { me: null, events: null, cameras: [], alerts: [], unseen: 0 };

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

function fmtTime(ts) { return ts ? new Date(ts * 1000).toLocaleString() : ""; }
function fmtDist(d) { return d === null || d === undefined ? "" : Number(d).toFixed(3); }

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
  openEvents();
  route();
}

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

// --- live events -----------------------------------------------------------------------

function openEvents() {
  if (state.events) state.events.close();
  const es = new EventSource("/api/events");
  es.addEventListener("cameras", (ev) => { state.cameras = JSON.parse(ev.data); updateTiles(); });
  es.addEventListener("alert", (ev) => onAlert(JSON.parse(ev.data)));
  state.events = es;
}

function alertItem(a) {
  return el("div", { class: "card alert", "data-alert": a.id },
    a.snapshot_url ? el("img", { src: a.snapshot_url, alt: `snapshot of ${a.person}` }) : null,
    el("div", {},
      el("div", {}, el("strong", { class: "alert-person", text: a.person }), " on ",
         el("span", { class: "alert-camera", text: a.camera })),
      el("div", { class: "muted", text: `${fmtTime(a.ts)} · distance ${fmtDist(a.distance)}` })));
}

function onAlert(a) {
  state.alerts.unshift(a);
  state.unseen += 1;
  const badge = document.getElementById("alert-count");
  badge.textContent = String(state.unseen);
  badge.hidden = false;
  const toast = el("div", { class: "toast", "data-alert": a.id },
    a.snapshot_url ? el("img", { src: a.snapshot_url, alt: "" }) : null,
    el("div", {}, el("strong", { text: `Alert: ${a.person}` }),
       el("div", { text: `${a.camera} · ${fmtTime(a.ts)} · distance ${fmtDist(a.distance)}` })));
  document.getElementById("toasts").prepend(toast);
  setTimeout(() => toast.remove(), 15000);
  const list = document.getElementById("alert-list");
  if (list) list.prepend(alertItem(a));
}

// --- live views ------------------------------------------------------------------------

function cameraTile(cam, single) {
  const name = encodeURIComponent(cam.camera);
  return el("div", { class: "tile" + (single ? " single" : ""), "data-camera": cam.camera },
    el("a", { href: `#/camera/${name}` },
       el("img", { class: "stream", src: `/api/cameras/${name}/stream.mjpeg`, alt: `camera ${cam.camera}` })),
    el("div", { class: "caption" },
       el("span", { class: "name", text: cam.camera }),
       el("span", { class: "state" }),
       el("span", { class: "stats" }),
       el("span", { class: "inview" })));
}

function updateTiles() {
  for (const cam of state.cameras) {
    const tile = document.querySelector(`.tile[data-camera="${CSS.escape(cam.camera)}"]`);
    if (!tile) continue;
    const st = tile.querySelector(".state");
    st.textContent = cam.state;
    st.className = "state " + cam.state;
    tile.querySelector(".stats").textContent =
      `${cam.fps.toFixed(1)} fps · latency ${cam.latency_ms === null ? "–" : Math.round(cam.latency_ms) + " ms"}`;
    tile.querySelector(".inview").textContent = cam.names.length ? "In view: " + cam.names.join(", ") : "";
  }
}

async function viewLive(show = render) {
  const cams = await api("/api/cameras");
  state.cameras = cams;
  const grid = el("div", { class: "grid" }, cams.map(c => cameraTile(c, false)));
  show(el("h2", { text: "Cameras" }), cams.length ? grid : el("p", { class: "muted", text: "No camera yet." }));
  updateTiles();
}

async function viewCamera(name, show = render) {
  const cams = await api("/api/cameras");
  state.cameras = cams;
  const cam = cams.find(c => c.camera === name) || { camera: name };
  show(el("h2", {}, el("a", { href: "#/live", text: "Cameras" }), " / ", name), cameraTile(cam, true));
  updateTiles();
}

// --- watchlist -------------------------------------------------------------------------

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

function personCard(p) {
  const admin = state.me.role === "admin";
  const msg = el("p", { class: "error" });
  const photos = el("div", { class: "photos" }, p.photos.map(ph => el("div", { class: "photo" },
    el("img", { src: ph.url, alt: ph.filename, title: ph.filename }),
    admin && p.photos.length > 1 ? el("button", { type: "button", title: "remove this photo", text: "×",
      onclick: async () => { try { await api(`/api/people/${encodeURIComponent(p.name)}/photos/${ph.id}`, { method: "DELETE" }); viewWatchlist(); } catch (e) { msg.textContent = errorText(e); } } }) : null)));
  const actions = admin ? el("span", {},
    el("button", { type: "button", text: "Rename", onclick: async () => {
      const to = prompt(`New name for ${p.name}`, p.name);
      if (!to || to === p.name) return;
      try { await api(`/api/people/${encodeURIComponent(p.name)}`, { method: "PATCH", body: { name: to } }); viewWatchlist(); }
      catch (e) { msg.textContent = errorText(e); } } }),
    " ",
    el("button", { type: "button", class: "danger", text: "Delete", onclick: async () => {
      if (!confirm(`Delete ${p.name} and all their photos?`)) return;
      try { await api(`/api/people/${encodeURIComponent(p.name)}`, { method: "DELETE" }); viewWatchlist(); }
      catch (e) { msg.textContent = errorText(e); } } })) : null;
  const add = admin ? dropZone("Add photos: drop here or", async (files) => {
    const fd = new FormData();
    files.forEach(f => fd.append("photos", f));
    msg.textContent = "checking…";
    try { await api(`/api/people/${encodeURIComponent(p.name)}/photos`, { method: "POST", body: fd }); viewWatchlist(); }
    catch (e) { msg.textContent = errorText(e); }
  }) : null;
  return el("div", { class: "card person", "data-person": p.name },
    el("h3", {}, el("span", { text: p.name }), actions), photos, add, msg);
}

function enrollForm() {
  let files = [];
  const msg = el("p", { class: "error", id: "enroll-error" });
  const chosen = el("span", { class: "muted" });
  const name = el("input", { name: "name", placeholder: "name (letters, digits, _ . -)", required: true, id: "enroll-name" });
  const zone = dropZone("Photos: drop here or", (f) => { files = f; chosen.textContent = f.map(x => x.name).join(", "); });
  zone.input.id = "enroll-photos";
  const form = el("form", { class: "card", id: "enroll-form" },
    el("h3", { text: "Enroll a person" }),
    el("div", { class: "row" }, name, chosen), zone,
    el("div", { class: "row" }, el("button", { type: "submit", text: "Enroll" })), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!files.length) { msg.textContent = "add at least one photo"; return; }
    const fd = new FormData();
    fd.append("name", name.value.trim());
    files.forEach(f => fd.append("photos", f));
    msg.textContent = "checking photos…";
    try { await api("/api/people", { method: "POST", body: fd }); viewWatchlist(); }
    catch (e) { msg.textContent = errorText(e); }
  });
  return form;
}

async function viewWatchlist(show = render) {
  const people = await api("/api/people");
  show(el("h2", { text: "Watchlist" }),
    state.me.role === "admin" ? enrollForm() : el("p", { class: "muted", id: "viewer-note", text: "Viewers can see the watchlist; only admins can change it." }),
    el("div", { class: "people", id: "people" }, people.map(personCard)),
    people.length ? null : el("p", { class: "muted", text: "Nobody enrolled yet." }));
}

// --- alerts, history, search -----------------------------------------------------------

async function viewAlerts(show = render) {
  state.unseen = 0;
  document.getElementById("alert-count").hidden = true;
  const alerts = await api("/api/alerts?limit=100");
  show(el("h2", { text: "Alerts" }),
    el("div", { class: "alerts", id: "alert-list" }, alerts.map(alertItem)));
}

function sightingRow(s) {
  return el("tr", { "data-sighting": s.id },
    el("td", {}, s.snapshot_url ? el("img", { src: s.snapshot_url, alt: "" }) : null),
    el("td", { text: fmtTime(s.ts) }), el("td", { text: s.camera }),
    el("td", { text: s.person || "unknown" }), el("td", { text: fmtDist(s.distance) }),
    el("td", { text: String(s.frame) }));
}

async function viewHistory(show = render) {
  const people = await api("/api/people");
  const person = el("select", { name: "person" }, el("option", { value: "", text: "anyone" }),
    people.map(p => el("option", { value: p.name, text: p.name })));
  const camera = el("select", { name: "camera" }, el("option", { value: "", text: "any camera" }),
    state.cameras.map(c => el("option", { value: c.camera, text: c.camera })));
  const since = el("input", { type: "datetime-local", name: "since" });
  const until = el("input", { type: "datetime-local", name: "until" });
  const named = el("input", { type: "checkbox", name: "named" });
  const body = el("tbody");
  const more = el("button", { type: "button", text: "Older", hidden: true });
  let before = null;
  async function load(reset) {
    const q = new URLSearchParams({ limit: "50" });
    if (person.value) q.set("person", person.value);
    if (camera.value) q.set("camera", camera.value);
    if (since.value) q.set("since", String(new Date(since.value).getTime() / 1000));
    if (until.value) q.set("until", String(new Date(until.value).getTime() / 1000));
    if (named.checked) q.set("named", "true");
    if (!reset && before) q.set("before", String(before));
    const page = await api("/api/sightings?" + q);
    if (reset) body.replaceChildren();
    page.items.forEach(s => body.append(sightingRow(s)));
    before = page.next_before;
    more.hidden = !before;
  }
  more.addEventListener("click", () => load(false));
  const form = el("form", { class: "row" }, person, camera, "from", since, "to", until,
    el("label", {}, named, " named only"), el("button", { type: "submit", text: "Show" }));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(true); });
  show(el("h2", { text: "History" }), form,
    el("table", {}, el("thead", {}, el("tr", {}, ["", "time", "camera", "person", "distance", "frame"].map(h => el("th", { text: h })))), body),
    more);
  await load(true);
}

async function viewSearch(show = render) {
  const msg = el("p", { class: "error", id: "search-error" });
  const summary = el("p", { class: "muted", id: "search-summary" });
  const results = el("div", { class: "results", id: "search-results" });
  const tol = el("input", { type: "number", step: "0.05", min: "0.1", max: "1.5", value: "0.6", name: "tolerance" });
  async function search(files) {
    if (!files.length) return;
    const fd = new FormData();
    fd.append("photo", files[0]);
    fd.append("tolerance", tol.value);
    msg.textContent = "";
    summary.textContent = "searching…";
    results.replaceChildren();
    try {
      const r = await api("/api/search", { method: "POST", body: fd });
      summary.textContent = `${r.total} sighting(s) within ${r.tolerance} among ${r.searched} stored faces (${r.took_ms} ms)`;
      r.items.forEach(s => results.append(el("div", { class: "card result", "data-sighting": s.id },
        s.snapshot_url ? el("img", { src: s.snapshot_url, alt: "" }) : null,
        el("div", {}, el("strong", { text: s.person || "unknown" }), ` · ${s.camera}`),
        el("div", { class: "muted", text: `${fmtTime(s.ts)} · distance ${fmtDist(s.query_distance)}` }))));
    } catch (e) { summary.textContent = ""; msg.textContent = errorText(e); }
  }
  const zone = dropZone("Drop a face photo here or", search);
  zone.input.id = "search-photo";
  zone.input.removeAttribute("multiple");
  show(el("h2", { text: "Search by photo" }),
    el("div", { class: "row" }, "tolerance", tol), zone, msg, summary, results);
}

async function viewAdmin(show = render) {
  const users = await api("/api/users");
  const tokens = await api("/api/tokens");
  const audit = await api("/api/audit?limit=100");
  const lockouts = await api("/api/lockouts");
  const msg = el("p", { class: "error" });
  const uname = el("input", { placeholder: "user name", required: true });
  const upw = el("input", { type: "password", placeholder: "password (10+ characters, not common)", required: true });
  const urole = el("select", {}, el("option", { value: "viewer", text: "viewer" }), el("option", { value: "admin", text: "admin" }));
  const uform = el("form", { class: "row" }, uname, upw, urole, el("button", { type: "submit", text: "Add user" }));
  uform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("/api/users", { method: "POST", body: { username: uname.value, password: upw.value, role: urole.value } }); viewAdmin(); }
    catch (e) { msg.textContent = errorText(e); }
  });
  const tname = el("input", { placeholder: "token name", required: true });
  const shown = el("p", { class: "ok" });
  const tform = el("form", { class: "row" }, tname, el("button", { type: "submit", text: "New API token (90 days)" }));
  tform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { const t = await api("/api/tokens", { method: "POST", body: { name: tname.value, days: 90 } });
          shown.textContent = `Token (shown once): ${t.token}`; }
    catch (e) { msg.textContent = errorText(e); }
  });
  const locked = new Set(lockouts.filter(l => l.username).map(l => l.username));
  show(el("h2", { text: "Users" }), uform, msg,
    el("table", {}, users.map(u => el("tr", {}, el("td", { text: u.username }), el("td", { text: u.role }),
      el("td", {}, locked.has(u.username) ? el("button", { type: "button", text: "Unlock log-in",
        onclick: async () => { await api(`/api/users/${encodeURIComponent(u.username)}/unlock`, { method: "POST" }); viewAdmin(); } }) : null),
      el("td", {}, u.username === state.me.username ? null : el("button", { type: "button", class: "danger", text: "Delete",
        onclick: async () => { if (confirm(`Delete user ${u.username}?`)) { await api(`/api/users/${encodeURIComponent(u.username)}`, { method: "DELETE" }); viewAdmin(); } } }))))),
    el("h2", { text: "API tokens" }), tform, shown,
    el("table", {}, tokens.map(t => el("tr", {}, el("td", { text: t.name }), el("td", { text: t.username }),
      el("td", { text: t.expires_at ? "expires " + fmtTime(t.expires_at) : "never expires" }),
      el("td", {}, el("button", { type: "button", class: "danger", text: "Revoke",
        onclick: async () => { await api(`/api/tokens/${t.id}`, { method: "DELETE" }); viewAdmin(); } }))))),
    el("h2", { text: "Audit log" }),
    el("table", {}, audit.map(a => el("tr", {}, el("td", { text: fmtTime(a.ts) }), el("td", { text: a.username }),
      el("td", { text: a.action }), el("td", { text: a.target }), el("td", { class: "muted", text: a.detail })))));
}

function viewAccount(show = render) {
  const current = el("input", { id: "pw-current", type: "password", autocomplete: "current-password", required: true });
  const fresh = el("input", { id: "pw-new", type: "password", autocomplete: "new-password", minlength: 10, required: true });
  const again = el("input", { id: "pw-again", type: "password", autocomplete: "new-password", minlength: 10, required: true });
  const result = el("p", { id: "pw-result" });
  const form = el("form", { id: "password-form", class: "card" },
    el("label", {}, "Current password ", current),
    el("label", {}, "New password (10+ characters) ", fresh),
    el("label", {}, "New password again ", again),
    el("button", { type: "submit", text: "Change password" }), result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    result.className = "error";
    if (fresh.value !== again.value) { result.textContent = "The two new passwords differ."; return; }
    try {
      const r = await api(`/api/users/${encodeURIComponent(state.me.username)}/password`, {
        method: "POST", body: { current_password: current.value, new_password: fresh.value } });
      form.reset();
      result.className = "ok";
      result.textContent = `Password changed; ${r.revoked_tokens} other session(s) and token(s) of yours no longer work.`;
    } catch (e) { result.textContent = errorText(e); }
  });
  show(el("h2", { text: `Account: ${state.me.username} (${state.me.role})` }), form);
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
  const parts = (location.hash || "#/live").slice(2).split("/");
  const page = parts[0] || "live";
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.dataset.nav === page || (page === "camera" && a.dataset.nav === "live")));
  try {
    if (page === "camera") await viewCamera(decodeURIComponent(parts[1] || ""), show);
    else if (page === "watchlist") await viewWatchlist(show);
    else if (page === "alerts") await viewAlerts(show);
    else if (page === "history") await viewHistory(show);
    else if (page === "search") await viewSearch(show);
    else if (page === "admin") await viewAdmin(show);
    else if (page === "account") viewAccount(show);
    else await viewLive(show);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) show(el("p", { class: "error", text: errorText(e) }));
  }
}

window.addEventListener("hashchange", route);
start().then(() => { if (!state.me) showLogin(); });
