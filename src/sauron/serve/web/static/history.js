// History: appearances (a person's continuous presence at a camera, from the stored
// sightings) with their best crop and a confidence, a per-camera timeline of the day, and
// every sighting below; filtered by person, camera and time.
// #/history?person=ID&camera=NAME&since=UNIX&until=UNIX opens it filtered (the alerts link here).
"use strict";

function sightingRow(s, onChange) {
  return el("tr", { "data-sighting": s.id, "data-clip": s.clip_url },
    el("td", {}, s.snapshot_url ? el("img", { src: s.snapshot_url, alt: "", class: "zoomable",
      onclick: () => zoom(s.frame_url || s.snapshot_url, `${s.camera}, ${fmtTime(s.ts)}`) }) : null),
    el("td", { text: fmtTime(s.ts) }), el("td", { text: s.camera }),
    el("td", { text: personName(s.person) || "unknown" }), el("td", { text: fmtConfidence(confidenceOf(s.distance, state.tolerance)) }),
    el("td", { text: String(s.frame) }),
    el("td", {}, correctionButtons(s, onChange)));
}

// Unix seconds as a datetime-local input's value (local time, to the second).
function localInput(ts) {
  const d = new Date(ts * 1000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

function fmtSpan(a) {
  const secs = Math.round(a.last_seen - a.first_seen);
  return secs < 1 ? fmtTime(a.first_seen) : `${fmtTime(a.first_seen)} – ${new Date(a.last_seen * 1000).toLocaleTimeString()} (${secs} s)`;
}

// A picture shown large over the page until clicked: the whole annotated frame where a
// clip covers the sighting (taken from the clip), else the stored crop.
function zoom(src, caption) {
  const box = el("div", { class: "zoom", id: "zoom", onclick: () => box.remove() },
    el("figure", {}, el("img", { src, alt: caption }), el("figcaption", { text: caption + " · click to close" })));
  document.body.append(box);
}

function appearanceCard(a, i) {
  const who = a.person ? personName(a.person) : "unknown";
  return el("div", { class: "card appearance" + (a.person ? "" : " unknown"), id: `appearance-${i}`,
                     "data-person": a.person || "", "data-camera": a.camera, "data-clip": a.best.clip_url },
    a.best.snapshot_url ? el("img", { src: a.best.snapshot_url, alt: `best view of ${who}`, class: "zoomable",
      onclick: () => zoom(a.best.frame_url || a.best.snapshot_url, `${who} on ${a.camera}, ${fmtTime(a.best.ts)}`) }) : null,
    el("div", {},
      el("div", {}, el("strong", { class: "appearance-person", text: who }), " on ",
         el("a", { href: `#/camera/${encodeURIComponent(a.camera)}`, text: a.camera })),
      el("div", { class: "muted", text: fmtSpan(a) }),
      el("div", { class: "muted" }, `${a.sightings} sighting(s)`,
         a.confidence === null ? "" : [" · confidence ", el("span", { class: "confidence", text: fmtConfidence(a.confidence) })])));
}

// One bar per camera over [start, end): a block per appearance, placed by time.
function timeline(items, start, end) {
  const cams = [...new Set(items.map(a => a.camera))].sort();
  const span = end - start;
  const pct = (t) => `${Math.max(0, Math.min(100, (t - start) / span * 100))}%`;
  const hours = [0, 6, 12, 18, 24].map(h => el("span", { style: null, text: new Date((start + span * h / 24) * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) }));
  return el("div", { class: "timeline card", id: "timeline" },
    el("div", { class: "muted", text: `${new Date(start * 1000).toLocaleString()} – ${new Date(end * 1000).toLocaleString()}` }),
    cams.map(cam => el("div", { class: "lane", "data-camera": cam },
      el("span", { class: "lane-name", text: cam }),
      el("div", { class: "lane-bar" }, items.map((a, i) => a.camera !== cam ? null : (() => {
        const block = el("a", { class: "block" + (a.person ? " named" : ""), href: `#appearance-${i}`,
          title: `${a.person ? personName(a.person) : "unknown"} · ${fmtSpan(a)}`,
          onclick: (ev) => { ev.preventDefault(); document.getElementById(`appearance-${i}`).scrollIntoView({ block: "center" }); } });
        block.style.left = pct(a.first_seen);
        block.style.width = `max(3px, calc(${pct(a.last_seen)} - ${pct(a.first_seen)}))`;
        return block;
      })())))),
    el("div", { class: "lane-scale" }, hours));
}

async function viewHistory(show = render, args = [], params = new URLSearchParams()) {
  const people = await loadPeople();
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
  const lanes = el("div", { id: "timeline-box" });
  const cards = el("div", { class: "appearances", id: "appearances" });
  const note = el("p", { class: "muted", id: "appearances-note" });
  const body = el("tbody");
  const more = el("button", { type: "button", text: "Older", hidden: true });
  let before = null;
  let loads = 0;
  function filters() {
    const q = new URLSearchParams();
    if (person.value) q.set("person", person.value);
    if (camera.value) q.set("camera", camera.value);
    if (since.value) q.set("since", String(new Date(since.value).getTime() / 1000));
    if (until.value) q.set("until", String(new Date(until.value).getTime() / 1000));
    if (named.checked) q.set("named", "true");
    return q;
  }
  async function loadAppearances() {
    const q = filters();
    const page = await api("/api/appearances?" + q);
    state.tolerance = page.tolerance;
    const newest = page.items.length ? page.items[0].last_seen : Date.now() / 1000;
    const day = new Date(newest * 1000); day.setHours(0, 0, 0, 0);
    const start = Number(q.get("since")) || day.getTime() / 1000;
    const end = Number(q.get("until")) || start + 86400;
    lanes.replaceChildren(page.items.length ? timeline(page.items, start, end) : "");
    cards.replaceChildren(...page.items.map(appearanceCard));
    note.textContent = page.items.length
      ? `${page.items.length} appearance(s) from ${page.scanned} sighting(s)${page.truncated ? " (the newest only: narrow the time for more)" : ""}`
      : "Nobody seen in this time.";
  }
  async function loadSightings(reset) {
    const q = filters();
    q.set("limit", "50");
    if (!reset && before) q.set("before", String(before));
    const mine = ++loads;
    const page = await api("/api/sightings?" + q);
    if (mine !== loads) return; // a newer load (filters changed) draws the table
    if (reset) body.replaceChildren();
    page.items.forEach(s => body.append(sightingRow(s, () => loadSightings(true))));
    before = page.next_before;
    more.hidden = !before;
  }
  more.addEventListener("click", () => loadSightings(false));
  body.addEventListener("click", (ev) => {
    if (ev.target.classList.contains("zoomable")) zoom(ev.target.src, "sighting");
  });
  const form = el("form", { class: "row" }, person, camera, "from", since, "to", until,
    el("label", {}, named, " named only"), el("button", { type: "submit", text: "Show" }));
  form.addEventListener("submit", async (ev) => { ev.preventDefault(); await loadAppearances(); await loadSightings(true); });
  show(el("h2", { text: "History" }), form, lanes, note, cards,
    el("details", { class: "sightings" }, el("summary", { text: "Every sighting" }),
      el("table", {}, el("thead", {}, el("tr", {}, ["", "time", "camera", "person", "confidence", "frame", ""].map(h => el("th", { text: h })))), body),
      more));
  await loadAppearances();
  await loadSightings(true);
}

registerPage("history", { nav: "History", order: 40, view: (show, args, params) => viewHistory(show, args, params) });
