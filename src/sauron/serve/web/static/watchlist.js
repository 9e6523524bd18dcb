// Watchlist: the people watched for, with their photos, why and when last seen; admins
// enroll (names as written: the id is derived), edit and remove.
"use strict";

async function sendPhotos(path, fd, msg, after) {
  msg.replaceChildren("checking photos…");
  async function attempt(largest) {
    if (largest) fd.set("largest", "true");
    try { await api(path, { method: "POST", body: fd }); after(); }
    catch (e) { msg.replaceChildren(errorText(e), " ", largestOffer(e, () => attempt(true)) || ""); }
  }
  await attempt(false);
}

function lastSeen(p) {
  if (!p.last_seen) return el("span", { class: "muted", text: "not seen yet" });
  return el("span", {}, `last seen ${fmtTime(p.last_seen)} on `,
    el("a", { href: `#/camera/${encodeURIComponent(p.last_camera)}`, text: p.last_camera }));
}

function editForm(p, msg) {
  const display = el("input", { name: "display_name", value: p.display_name, maxlength: 128, required: true });
  const reason = el("input", { name: "reason", value: p.reason, maxlength: 2000, placeholder: "reason for watching" });
  const notes = el("textarea", { name: "notes", maxlength: 2000, rows: 2, placeholder: "notes" });
  notes.value = p.notes;
  const form = el("form", { class: "edit-person" }, el("label", {}, "Name ", display),
    el("label", {}, "Reason ", reason), el("label", {}, "Notes ", notes),
    el("div", { class: "row" }, el("button", { type: "submit", text: "Save" }),
      el("button", { type: "button", text: "Cancel", onclick: () => form.remove() })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api(`/api/people/${encodeURIComponent(p.name)}`, { method: "PATCH",
        body: { display_name: display.value, reason: reason.value, notes: notes.value } });
      viewWatchlist();
    } catch (e) { msg.textContent = errorText(e); }
  });
  return form;
}

function personCard(p) {
  const admin = state.me.role === "admin";
  const msg = el("p", { class: "error" });
  const photos = el("div", { class: "photos" }, p.photos.map(ph => el("div", { class: "photo" },
    el("img", { src: ph.url, alt: ph.filename, title: ph.filename }),
    admin && p.photos.length > 1 ? el("button", { type: "button", title: "remove this photo", text: "×",
      onclick: async () => { try { await api(`/api/people/${encodeURIComponent(p.name)}/photos/${ph.id}`, { method: "DELETE" }); viewWatchlist(); } catch (e) { msg.textContent = errorText(e); } } }) : null)));
  const card = el("div", { class: "card person", "data-person": p.name });
  const actions = admin ? el("span", { class: "actions" },
    el("button", { type: "button", text: "Edit", class: "edit", onclick: () => {
      if (!card.querySelector(".edit-person")) card.insertBefore(editForm(p, msg), msg);
    } }),
    " ",
    el("button", { type: "button", class: "danger", text: "Delete", onclick: async () => {
      if (!confirm(`Delete ${p.display_name} and all their photos?`)) return;
      try { await api(`/api/people/${encodeURIComponent(p.name)}`, { method: "DELETE" }); viewWatchlist(); }
      catch (e) { msg.textContent = errorText(e); } } })) : null;
  const add = admin ? dropZone("Add photos: drop here or", async (files) => {
    const fd = new FormData();
    files.forEach(f => fd.append("photos", f));
    await sendPhotos(`/api/people/${encodeURIComponent(p.name)}/photos`, fd, msg, viewWatchlist);
  }) : null;
  card.append(...[
    el("h3", {}, el("span", { class: "display-name", text: p.display_name }), actions),
    p.display_name !== p.name ? el("div", { class: "muted person-id", text: `id ${p.name}` }) : null,
    p.reason ? el("div", { class: "reason", text: `Reason: ${p.reason}` }) : null,
    p.notes ? el("div", { class: "notes muted", text: p.notes }) : null,
    el("div", { class: "last-seen" }, lastSeen(p)),
    photos, add, msg].filter(Boolean));
  return card;
}

function enrollForm() {
  let files = [];
  const msg = el("p", { class: "error", id: "enroll-error" });
  const chosen = el("span", { class: "muted" });
  const name = el("input", { name: "name", placeholder: "name as written, e.g. José García", maxlength: 128, required: true, id: "enroll-name" });
  const reason = el("input", { name: "reason", placeholder: "reason for watching", maxlength: 2000, id: "enroll-reason" });
  const notes = el("input", { name: "notes", placeholder: "notes", maxlength: 2000, id: "enroll-notes" });
  const zone = dropZone("Photos: drop here or", (f) => { files = f; chosen.textContent = f.map(x => x.name).join(", "); });
  zone.input.id = "enroll-photos";
  const form = el("form", { class: "card", id: "enroll-form" },
    el("h3", { text: "Enroll a person" }),
    el("div", { class: "row" }, name, reason, notes, chosen), zone,
    el("div", { class: "row" }, el("button", { type: "submit", text: "Enroll" })), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!files.length) { msg.textContent = "add at least one photo"; return; }
    const fd = new FormData();
    fd.append("name", name.value.trim());
    fd.append("reason", reason.value.trim());
    fd.append("notes", notes.value.trim());
    files.forEach(f => fd.append("photos", f));
    await sendPhotos("/api/people", fd, msg, viewWatchlist);
  });
  return form;
}

async function viewWatchlist(show = render) {
  const people = await loadPeople();
  show(el("h2", { text: "Watchlist" }),
    state.me.role === "admin" ? enrollForm() : el("p", { class: "muted", id: "viewer-note", text: "Viewers can see the watchlist; only admins can change it." }),
    el("div", { class: "people", id: "people" }, people.map(personCard)),
    people.length ? null : el("p", { class: "muted", text: "Nobody enrolled yet." }));
}

registerPage("watchlist", { nav: "Watchlist", order: 20, view: (show) => viewWatchlist(show) });
