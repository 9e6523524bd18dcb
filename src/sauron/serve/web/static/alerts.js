// Alerts: the list (#/alerts, filtered by person, camera and state, paged; a returning
// visitor's alerts among them, see isVisitor), acknowledging
// one or all, the count badge in the menu, the pop-ups as alerts arrive, and muting the
// pop-ups of a person or a camera (kept in this browser; muted alerts are still listed).
"use strict";

const MUTE_KEY = "sauron.muted";
const PAGE = 50;

function muted() {
  try {
    const m = JSON.parse(localStorage.getItem(MUTE_KEY) || "{}");
    return { people: m.people || [], cameras: m.cameras || [] };
  } catch (e) { return { people: [], cameras: [] }; }
}

function setMuted(kind, value, on) {
  const m = muted();
  m[kind] = m[kind].filter(v => v !== value);
  if (on) m[kind].push(value);
  localStorage.setItem(MUTE_KEY, JSON.stringify(m));
  const bar = document.getElementById("muted-bar");
  if (bar) bar.replaceWith(mutedBar());
}

function isMuted(a) {
  const m = muted();
  return m.people.includes(a.person) || m.cameras.includes(a.camera);
}

function muteButtons(a) {
  return el("span", { class: "mute" },
    el("button", { type: "button", class: "mute-person", title: "no more pop-ups for this person",
                   text: `Mute ${personName(a.person)}`, onclick: () => setMuted("people", a.person, true) }),
    el("button", { type: "button", class: "mute-camera", title: "no more pop-ups from this camera",
                   text: `Mute ${a.camera}`, onclick: () => setMuted("cameras", a.camera, true) }));
}

function mutedBar() {
  const m = muted();
  const chips = [...m.people.map(p => ["people", p, personName(p)]), ...m.cameras.map(c => ["cameras", c, `camera ${c}`])]
    .map(([kind, value, label]) => el("button", { type: "button", class: "chip", "data-unmute": value, title: "unmute",
      text: `${label} ×`, onclick: () => setMuted(kind, value, false) }));
  return el("div", { class: "row muted-bar", id: "muted-bar", hidden: !chips.length }, el("span", { class: "muted", text: "Pop-ups muted for:" }), chips);
}

// a returning visitor's alert (kind "visitor"): its person is "visitor 17"; the link goes
// to the visitor's page, not to the history of a watched person
function isVisitor(a) { return a.visitor_id != null; }

function visitorNote(a) {
  if (!isVisitor(a)) return "";
  return a.visits ? ` · returning visitor, visit ${a.visits}` : " · returning visitor";
}

function historyLink(a) {
  const q = new URLSearchParams({ person: a.person, camera: a.camera,
    since: String(Math.floor(a.ts - 5)), until: String(Math.ceil((a.last_seen_at || a.ts) + 5)) });
  return `#/history?${q}`;
}

function alertItem(a) {
  const ackBox = el("span", { class: "ack" });
  function drawAck(x) {
    if (x.acknowledged_at) {
      ackBox.replaceChildren(el("span", { class: "muted acked", text: `acknowledged by ${x.acknowledged_by} ${fmtTime(x.acknowledged_at)}` }));
    } else {
      ackBox.replaceChildren(el("button", { type: "button", class: "ack-one", text: "Acknowledge", onclick: async () => {
        try { drawAck(await api(`/api/alerts/${a.id}/ack`, { method: "POST" })); item.classList.add("is-acked"); }
        catch (e) { ackBox.append(el("span", { class: "error", text: " " + errorText(e) })); }
      } }));
    }
  }
  drawAck(a);
  const item = el("div", { class: "card alert" + (a.acknowledged_at ? " is-acked" : ""), "data-alert": a.id, "data-clip": a.clip_url },
    a.snapshot_url ? el("img", { src: a.snapshot_url, alt: `snapshot of ${personName(a.person)}`, class: "zoomable",
      onclick: () => zoom(a.frame_url || a.snapshot_url, `${personName(a.person)} on ${a.camera}, ${fmtTime(a.ts)}`) }) : null,
    el("div", { class: "alert-body" },
      el("div", {}, el("strong", { class: "alert-person", text: personName(a.person) }), " on ",
         el("a", { class: "alert-camera", href: `#/camera/${encodeURIComponent(a.camera)}`, text: a.camera })),
      el("div", { class: "muted", text: `${fmtTime(a.ts)}${(a.last_seen_at || a.ts) > a.ts + 1 ? " – " + fmtTime(a.last_seen_at) : ""} · ${a.frames || 1} frame(s)${a.confidence == null ? "" : " · confidence " + fmtConfidence(a.confidence)}${visitorNote(a)}` }),
      el("div", { class: "row" }, isVisitor(a)
        ? el("a", { class: "alert-visitor", href: `#/visitors/${a.visitor_id}`, text: "visitor" })
        : el("a", { class: "alert-history", href: historyLink(a), text: "history" }), ackBox, muteButtons(a))));
  return item;
}

function onAlert(a) {
  state.alerts.unshift(a);
  const list = document.getElementById("alert-list");
  if (list && list.accepts(a)) list.prepend(alertItem(a));
  if (isMuted(a)) return;
  state.unseen += 1;
  const badge = document.getElementById("alert-count");
  badge.textContent = String(state.unseen);
  badge.hidden = false;
  toast(el("div", { "data-alert": a.id },
    a.snapshot_url ? el("img", { src: a.snapshot_url, alt: "" }) : null,
    el("div", {}, el("strong", { text: `Alert: ${personName(a.person)}${isVisitor(a) ? " is back" : ""}` }),
       el("span", { class: "toast-detail", text: ` ${a.camera} · ${fmtTime(a.ts)}` })),
    muteButtons(a)));
}

async function viewAlerts(show = render, args = [], params = new URLSearchParams()) {
  state.unseen = 0;
  document.getElementById("alert-count").hidden = true;
  const [people, cams] = await Promise.all([loadPeople(), api("/api/cameras")]);
  const person = el("select", { name: "person", id: "alert-person" }, el("option", { value: "", text: "anyone" }),
    people.map(p => el("option", { value: p.name, text: p.display_name })));
  const camera = el("select", { name: "camera", id: "alert-camera" }, el("option", { value: "", text: "any camera" }),
    cams.map(c => el("option", { value: c.camera, text: c.camera })));
  const which = el("select", { name: "state", id: "alert-state" },
    ["open", "acknowledged", "all"].map(v => el("option", { value: v, text: v })));
  person.value = params.get("person") || "";
  camera.value = params.get("camera") || "";
  which.value = params.get("state") || "open";
  const list = el("div", { class: "alerts", id: "alert-list" });
  // whether a pushed alert belongs on the list as filtered
  list.accepts = (a) => (!person.value || a.person === person.value) && (!camera.value || a.camera === camera.value) && which.value !== "acknowledged";
  const more = el("button", { type: "button", id: "alert-older", text: "Older", hidden: true });
  const msg = el("p", { class: "error" });
  let before = null;
  let newest = null;
  let loads = 0;
  async function load(reset) {
    const q = new URLSearchParams({ limit: String(PAGE), state: which.value });
    if (person.value) q.set("person", person.value);
    if (camera.value) q.set("camera", camera.value);
    if (!reset && before) q.set("before", String(before));
    const mine = ++loads;
    const page = await api("/api/alerts?" + q);
    if (mine !== loads) return; // the filters changed meanwhile: a newer load draws the list
    // what the list shows now (tests and scripts wait for it)
    Object.assign(list.dataset, { state: which.value, person: person.value, camera: camera.value });
    if (reset) { list.replaceChildren(); newest = page.length ? page[0].id : null; }
    page.forEach(a => list.append(alertItem(a)));
    before = page.length ? page[page.length - 1].id : before;
    more.hidden = page.length < PAGE;
    if (reset && !page.length) list.append(el("p", { class: "muted", text: "No alert here." }));
  }
  more.addEventListener("click", () => load(false));
  const ackAll = el("button", { type: "button", id: "alert-ack-all", text: "Acknowledge all shown", onclick: async () => {
    if (newest === null) return;
    const body = { up_to_id: newest };
    if (person.value) body.person = person.value;
    if (camera.value) body.camera = camera.value;
    try { await api("/api/alerts/ack", { method: "POST", body }); await load(true); }
    catch (e) { msg.textContent = errorText(e); }
  } });
  for (const s of [person, camera, which]) s.addEventListener("change", () => load(true));
  show(el("h2", { text: "Alerts" }),
    el("div", { class: "row filters" }, person, camera, which, ackAll), mutedBar(), msg, list, more);
  await load(true);
}

onEvent("alert", onAlert);
registerPage("alerts", { nav: "Alerts", order: 30, badge: "alert-count", view: (show, args, params) => viewAlerts(show, args, params) });
