// Admin: users (role, disable, password reset, unlock, delete), API tokens (lifetime
// chosen, the new one shown at once), the audit log (filtered by user and action, paged).
"use strict";

const TOKEN_DAYS = [7, 30, 90, 365];

function detailText(detail) {
  if (!detail) return "";
  try {
    return Object.entries(JSON.parse(detail)).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
  } catch (e) { return detail; }
}

function userRow(u, locked, msg) {
  const me = u.username === state.me.username;
  const name = encodeURIComponent(u.username);
  const patch = async (body) => {
    try { await api(`/api/users/${name}`, { method: "PATCH", body }); viewAdmin(); }
    catch (e) { msg.textContent = errorText(e); }
  };
  const role = el("select", { class: "user-role", disabled: me, title: me ? "you cannot demote yourself" : null },
    ["viewer", "admin"].map(r => el("option", { value: r, text: r })));
  role.value = u.role;
  role.addEventListener("change", () => patch({ role: role.value }));
  return el("tr", { "data-user": u.username, class: u.disabled ? "is-disabled" : null },
    el("td", { text: u.username }), el("td", {}, role),
    el("td", { class: "user-state", text: u.disabled ? "disabled" : "active" }),
    el("td", { class: "user-actions" },
      me ? null : el("button", { type: "button", class: "user-disable", text: u.disabled ? "Enable" : "Disable",
                                 onclick: () => patch({ disabled: !u.disabled }) }),
      el("button", { type: "button", class: "user-reset", text: "Reset password", onclick: async () => {
        const pw = prompt(`New password for ${u.username} (10+ characters, not common):`);
        if (!pw) return;
        const body = { new_password: pw };
        if (me) body.current_password = prompt("Your current password:") || "";
        try {
          const r = await api(`/api/users/${name}/password`, { method: "POST", body });
          msg.className = "ok";
          msg.textContent = `Password of ${u.username} set; ${r.revoked_tokens} session(s) and token(s) of theirs no longer work.`;
        } catch (e) { msg.className = "error"; msg.textContent = errorText(e); }
      } }),
      locked.has(u.username) ? el("button", { type: "button", text: "Unlock log-in",
        onclick: async () => { await api(`/api/users/${name}/unlock`, { method: "POST" }); viewAdmin(); } }) : null,
      me ? null : el("button", { type: "button", class: "danger", text: "Delete",
        onclick: async () => { if (confirm(`Delete user ${u.username}?`)) { await api(`/api/users/${name}`, { method: "DELETE" }); viewAdmin(); } } })));
}

function tokenTable(tokens) {
  return el("table", { id: "token-table" }, tokens.map(t => el("tr", { "data-token": t.id }, el("td", { text: t.name }), el("td", { text: t.username }),
    el("td", { text: t.expires_at ? "expires " + fmtTime(t.expires_at) : "never expires" }),
    el("td", {}, el("button", { type: "button", class: "danger", text: "Revoke",
      onclick: async () => { await api(`/api/tokens/${t.id}`, { method: "DELETE" }); viewAdmin(); } })))));
}

function auditSection(users) {
  const who = el("select", { id: "audit-user" }, el("option", { value: "", text: "anyone" }),
    users.map(u => el("option", { value: u.username, text: u.username })));
  const action = el("input", { id: "audit-action", placeholder: "action, e.g. enroll", maxlength: 32 });
  const body = el("tbody", { id: "audit-rows" });
  const more = el("button", { type: "button", id: "audit-older", text: "Older", hidden: true });
  let before = null;
  async function load(reset) {
    const q = new URLSearchParams({ limit: "50" });
    if (who.value) q.set("username", who.value);
    if (action.value.trim()) q.set("action", action.value.trim());
    if (!reset && before) q.set("before", String(before));
    const rows = await api("/api/audit?" + q);
    if (reset) body.replaceChildren();
    rows.forEach(a => body.append(el("tr", { "data-audit": a.id }, el("td", { text: fmtTime(a.ts) }), el("td", { text: a.username }),
      el("td", { class: "audit-action", text: a.action }), el("td", { text: a.target }), el("td", { class: "muted", text: detailText(a.detail) }))));
    before = rows.length ? rows[rows.length - 1].id : before;
    more.hidden = rows.length < 50;
    body.dataset.filter = q.toString();
  }
  const form = el("form", { class: "row", id: "audit-form" }, who, action, el("button", { type: "submit", text: "Show" }));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(true); });
  more.addEventListener("click", () => load(false));
  load(true);
  return [el("h2", { text: "Audit log" }), form, el("table", {}, body), more];
}

async function viewAdmin(show = render) {
  const [users, tokens, lockouts] = await Promise.all([api("/api/users"), api("/api/tokens"), api("/api/lockouts")]);
  const msg = el("p", { class: "error", id: "admin-msg" });
  const uname = el("input", { placeholder: "user name", required: true });
  const upw = el("input", { type: "password", placeholder: "password (10+ characters, not common)", required: true });
  const urole = el("select", {}, el("option", { value: "viewer", text: "viewer" }), el("option", { value: "admin", text: "admin" }));
  const uform = el("form", { class: "row" }, uname, upw, urole, el("button", { type: "submit", text: "Add user" }));
  uform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("/api/users", { method: "POST", body: { username: uname.value, password: upw.value, role: urole.value } }); viewAdmin(); }
    catch (e) { msg.textContent = errorText(e); }
  });
  const tname = el("input", { placeholder: "token name", required: true, id: "token-name" });
  const tdays = el("select", { id: "token-days" }, TOKEN_DAYS.map(d => el("option", { value: d, text: `${d} days` })));
  tdays.value = "90";
  const shown = el("p", { class: "ok", id: "token-shown" });
  let table = tokenTable(tokens);
  const tform = el("form", { class: "row", id: "token-form" }, tname, tdays, el("button", { type: "submit", text: "New API token" }));
  tform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const t = await api("/api/tokens", { method: "POST", body: { name: tname.value, days: Number(tdays.value) } });
      shown.textContent = `Token "${t.name}" (shown once, copy it now): ${t.token}`;
      const fresh = tokenTable(await api("/api/tokens"));
      table.replaceWith(fresh);
      table = fresh;
      tform.reset();
      tdays.value = "90";
    } catch (e) { msg.textContent = errorText(e); }
  });
  const locked = new Set(lockouts.filter(l => l.username).map(l => l.username));
  show(el("h2", { text: "Users" }), uform, msg,
    el("table", { id: "user-table" }, users.map(u => userRow(u, locked, msg))),
    el("h2", { text: "API tokens" }), tform, shown, table,
    ...auditSection(users));
}

registerPage("admin", { nav: "Admin", order: 80, adminOnly: true, view: (show) => viewAdmin(show) });
