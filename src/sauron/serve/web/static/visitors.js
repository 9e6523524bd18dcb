// Visitors: faces of no enrolled person, grouped (GET /api/visitors). Admins merge two
// visitors, split off a wrong visit and add a visitor to the watchlist from their best crops.
"use strict";

function visitorCard(v, selected, onChange) {
  const pick = el("input", { type: "checkbox", class: "admin-only visitor-pick", "data-visitor": v.id,
    onchange: (ev) => { if (ev.target.checked) selected.add(v.id); else selected.delete(v.id); onChange(); } });
  const name = el("input", { placeholder: "name", class: "promote-name", maxlength: 64 });
  const msg = el("p", { class: "error" });
  const promote = el("form", { class: "row admin-only promote" }, name,
    el("button", { type: "submit", text: "Add to watchlist" }));
  promote.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const p = await api(`/api/visitors/${v.id}/promote`, { method: "POST", body: { name: name.value } });
      location.hash = "#/watchlist";
      toast(el("div", { text: `${v.label} is now ${p.name} on the watchlist` }), 8000);
    } catch (e) { msg.textContent = errorText(e); }
  });
  return el("div", { class: "card visitor", "data-visitor": v.id },
    el("h3", {}, pick, " ", el("a", { href: `#/visitors/${v.id}`, class: "visitor-label", text: v.label })),
    el("div", { class: "photos" }, v.crops.slice(0, 4).map(u => el("img", { src: u, alt: `crop of ${v.label}` }))),
    el("div", { class: "visitor-visits", text: `${v.visits} visit(s) · ${v.cameras.join(", ")}` }),
    el("div", { class: "muted", text: `first ${fmtTime(v.first_seen)} · last ${fmtTime(v.last_seen)}` }),
    promote, msg);
}

async function viewVisitors(show) {
  const sort = el("select", { name: "sort" },
    el("option", { value: "recent", text: "most recent first" }),
    el("option", { value: "visits", text: "most visits first" }));
  const grid = el("div", { class: "people", id: "visitor-list" });
  const msg = el("p", { class: "error" });
  const selected = new Set();
  const merge = el("button", { type: "button", class: "admin-only", id: "merge-visitors",
    text: "Merge selected", disabled: true });
  const changed = () => { merge.disabled = selected.size < 2; };
  async function load() {
    selected.clear();
    changed();
    const list = await api(`/api/visitors?sort=${sort.value}&limit=100`);
    grid.replaceChildren(...(list.length ? list.map(v => visitorCard(v, selected, changed))
      : [el("p", { class: "muted", text: "No visitors yet: faces of people nobody enrolled show up here." })]));
  }
  merge.addEventListener("click", async () => {
    const [into, ...others] = [...selected].sort((a, b) => a - b);
    msg.textContent = "";
    try {
      for (const other of others) {
        await api(`/api/visitors/${into}/merge`, { method: "POST", body: { other } });
      }
      await load();
    } catch (e) { msg.textContent = errorText(e); }
  });
  sort.addEventListener("change", load);
  show(el("h2", { text: "Visitors" }), el("div", { class: "row" }, sort, merge), msg, grid);
  await load();
}

async function viewVisitor(show, id) {
  const v = await api(`/api/visitors/${encodeURIComponent(id)}`);
  const visits = await api(`/api/visitors/${encodeURIComponent(id)}/visits`);
  const msg = el("p", { class: "error" });
  const rows = visits.map(s => el("tr", { "data-visit": s.id },
    el("td", {}, s.snapshot_url ? el("img", { src: s.snapshot_url, alt: "" }) : null),
    el("td", { text: fmtTime(s.started_at) }), el("td", { text: s.camera }),
    el("td", { text: s.quality.toFixed(2) }),
    el("td", {}, el("button", { type: "button", class: "admin-only split", text: "Not this visitor",
      onclick: async () => {
        try {
          const r = await api(`/api/visits/${s.id}/split`, { method: "POST" });
          location.hash = r.old ? `#/visitors/${r.old.id}` : `#/visitors/${r.new.id}`;
          route();
        } catch (e) { msg.textContent = errorText(e); }
      } }))));
  show(el("h2", {}, el("a", { href: "#/visitors", text: "Visitors" }), ` › ${v.label}`),
    el("p", { class: "muted", text: `${v.visits} visit(s) on ${v.cameras.join(", ")}; first ${fmtTime(v.first_seen)}, last ${fmtTime(v.last_seen)}` }),
    msg,
    el("table", { id: "visit-list" }, el("thead", {}, el("tr", {}, ["", "seen", "camera", "view quality", ""].map(h => el("th", { text: h })))),
      el("tbody", {}, rows)));
}

registerPage("visitors", {
  nav: "Visitors",
  order: 45,
  view: (show, args) => (args[0] ? viewVisitor(show, args[0]) : viewVisitors(show)),
});
