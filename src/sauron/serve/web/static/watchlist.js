// Watchlist: the people watched for, with their photos; admins enroll and edit.
"use strict";

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

registerPage("watchlist", { nav: "Watchlist", order: 20, view: (show) => viewWatchlist(show) });
