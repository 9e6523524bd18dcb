// Corrections of a wrong name, for admins: "Not this person" on a named sighting (the
// face becomes a negative example: it is not given that name again) and "This is..."
// (the crop is added to that person's photos). correctionButtons(s) is used by the
// History page's rows.
"use strict";

function correctionButtons(s, onDone) {
  const msg = el("span", { class: "error" });
  const notThis = s.person ? el("button", { type: "button", class: "not-this-person",
    text: `Not ${s.person}`,
    onclick: async () => {
      try {
        await api(`/api/sightings/${s.id}/not-this-person`, { method: "POST", body: {} });
        onDone();
      } catch (e) { msg.textContent = errorText(e); }
    } }) : null;
  const who = el("input", { placeholder: "this is…", class: "this-is-name", maxlength: 64, size: 10 });
  const thisIs = el("form", { class: "this-is" }, who, el("button", { type: "submit", text: "Add" }));
  thisIs.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api(`/api/sightings/${s.id}/this-is`, { method: "POST", body: { person: who.value } });
      onDone();
    } catch (e) { msg.textContent = errorText(e); }
  });
  return el("div", { class: "row admin-only corrections" }, notThis, s.snapshot_url ? thisIs : null, msg);
}
