// Admin: users, API tokens, the audit log.
"use strict";

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

registerPage("admin", { nav: "Admin", order: 80, adminOnly: true, view: (show) => viewAdmin(show) });
