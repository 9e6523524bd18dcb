// Account: change one's own password.
"use strict";

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

registerPage("account", { nav: "Account", order: 90, view: async (show) => viewAccount(show) });
