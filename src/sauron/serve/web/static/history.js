// History: stored sightings filtered by person, camera and time, paged.
// #/history?person=ID&camera=NAME&since=UNIX&until=UNIX opens it filtered (the alerts link here).
"use strict";

function sightingRow(s, onChange) {
  return el("tr", { "data-sighting": s.id, "data-clip": s.clip_url },
    el("td", {}, s.snapshot_url ? el("img", { src: s.snapshot_url, alt: "" }) : null),
    el("td", { text: fmtTime(s.ts) }), el("td", { text: s.camera }),
    el("td", { text: personName(s.person) || "unknown" }), el("td", { text: fmtDist(s.distance) }),
    el("td", { text: String(s.frame) }),
    el("td", {}, correctionButtons(s, onChange)));
}

// Unix seconds as a datetime-local input's value (local time, to the second).
function localInput(ts) {
  const d = new Date(ts * 1000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

async function viewHistory(show = render, args = [], params = new URLSearchParams()) {
  const people = await api("/api/people");
  const person = el("select", { name: "person" }, el("option", { value: "", text: "anyone" }),
    people.map(p => el("option", { value: p.name, text: p.display_name })));
  const camera = el("select", { name: "camera" }, el("option", { value: "", text: "any camera" }),
    state.cameras.map(c => el("option", { value: c.camera, text: c.camera })));
  const since = el("input", { type: "datetime-local", name: "since", step: 1 });
  const until = el("input", { type: "datetime-local", name: "until", step: 1 });
  const wanted = params.get("camera");
  if (wanted && !state.cameras.some(c => c.camera === wanted)) camera.append(el("option", { value: wanted, text: wanted }));
  person.value = params.get("person") || "";
  camera.value = wanted || "";
  if (Number(params.get("since"))) since.value = localInput(Number(params.get("since")));
  if (Number(params.get("until"))) until.value = localInput(Number(params.get("until")));
  const named = el("input", { type: "checkbox", name: "named" });
  const body = el("tbody");
  const more = el("button", { type: "button", text: "Older", hidden: true });
  let before = null;
  let loads = 0;
  async function load(reset) {
    const q = new URLSearchParams({ limit: "50" });
    if (person.value) q.set("person", person.value);
    if (camera.value) q.set("camera", camera.value);
    if (since.value) q.set("since", String(new Date(since.value).getTime() / 1000));
    if (until.value) q.set("until", String(new Date(until.value).getTime() / 1000));
    if (named.checked) q.set("named", "true");
    if (!reset && before) q.set("before", String(before));
    const mine = ++loads;
    const page = await api("/api/sightings?" + q);
    if (mine !== loads) return; // a newer load (filters changed) draws the table
    if (reset) body.replaceChildren();
    page.items.forEach(s => body.append(sightingRow(s, () => load(true))));
    before = page.next_before;
    more.hidden = !before;
  }
  more.addEventListener("click", () => load(false));
  const form = el("form", { class: "row" }, person, camera, "from", since, "to", until,
    el("label", {}, named, " named only"), el("button", { type: "submit", text: "Show" }));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(true); });
  show(el("h2", { text: "History" }), form,
    el("table", {}, el("thead", {}, el("tr", {}, ["", "time", "camera", "person", "distance", "frame", ""].map(h => el("th", { text: h })))), body),
    more);
  await load(true);
}

registerPage("history", { nav: "History", order: 40, view: (show, args, params) => viewHistory(show, args, params) });
