// Search by photo: every stored sighting of the face in a photo, nearest first, 100 at a
// time ("More"), shown as they come or grouped by camera or by hour; a photo of several
// people can be searched by its largest face.
"use strict";

const SEARCH_PAGE = 100;

function resultCard(s, tolerance) {
  return el("div", { class: "card result", "data-sighting": s.id },
    s.snapshot_url ? el("img", { src: s.snapshot_url, alt: "" }) : null,
    el("div", {}, el("strong", { text: personName(s.person) || "unknown" }), ` · ${s.camera}`),
    el("div", { class: "muted", text: `${fmtTime(s.ts)} · likeness ${fmtConfidence(confidenceOf(s.query_distance, tolerance))}` }));
}

function groupKey(s, by) {
  if (by === "camera") return s.camera;
  if (by === "hour") {
    const d = new Date(s.ts * 1000);
    d.setMinutes(0, 0, 0);
    return d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  }
  return "";
}

async function viewSearch(show = render) {
  const msg = el("p", { class: "error", id: "search-error" });
  const summary = el("p", { class: "muted", id: "search-summary" });
  const results = el("div", { id: "search-results" });
  const more = el("button", { type: "button", id: "search-more", text: "More", hidden: true });
  const tol = el("input", { type: "number", step: "0.05", min: "0.1", max: "1.5", value: "0.6", name: "tolerance" });
  const by = el("select", { id: "search-group" }, [["", "nearest first"], ["camera", "by camera"], ["hour", "by hour"]]
    .map(([v, t]) => el("option", { value: v, text: t })));
  let hits = [];
  let query = null;  // { file, largest }
  let total = 0;
  let tolerance = null;  // of the search: the likeness of each result is measured against it
  function draw() {
    results.replaceChildren();
    if (!by.value) { results.append(el("div", { class: "results" }, hits.map(h => resultCard(h, tolerance)))); return; }
    const groups = new Map();
    for (const h of hits) {
      const k = groupKey(h, by.value);
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(h);
    }
    const keys = [...groups.keys()];
    if (by.value === "hour") keys.sort((a, b) => groups.get(b)[0].ts - groups.get(a)[0].ts);
    else keys.sort();
    for (const k of keys) {
      results.append(el("section", { class: "search-group", "data-group": k },
        el("h3", { text: `${k} (${groups.get(k).length})` }), el("div", { class: "results" }, groups.get(k).map(h => resultCard(h, tolerance)))));
    }
  }
  async function fetchPage(offset) {
    const fd = new FormData();
    fd.append("photo", query.file);
    fd.append("tolerance", tol.value);
    fd.append("limit", String(SEARCH_PAGE));
    fd.append("offset", String(offset));
    if (query.largest) fd.append("largest", "true");
    return api("/api/search", { method: "POST", body: fd });
  }
  async function search(files, largest = false) {
    if (!files.length) return;
    query = { file: files[0], largest };
    msg.replaceChildren();
    summary.textContent = "searching…";
    results.replaceChildren();
    hits = [];
    try {
      const r = await fetchPage(0);
      hits = r.items;
      total = r.total;
      tolerance = r.tolerance;
      summary.textContent = `${r.total} sighting(s) within ${r.tolerance} among ${r.searched} stored faces (${r.took_ms} ms)`;
      more.hidden = hits.length >= total;
      draw();
    } catch (e) {
      summary.textContent = "";
      msg.replaceChildren(errorText(e), " ", largestOffer(e, () => search(files, true)) || "");
    }
  }
  more.addEventListener("click", async () => {
    try {
      const r = await fetchPage(hits.length);
      hits = hits.concat(r.items);
      more.hidden = !r.items.length || hits.length >= total;
      draw();
    } catch (e) { msg.textContent = errorText(e); }
  });
  by.addEventListener("change", draw);
  const zone = dropZone("Drop a face photo here or", (files) => search(files));
  zone.input.id = "search-photo";
  zone.input.removeAttribute("multiple");
  show(el("h2", { text: "Search by photo" }),
    el("div", { class: "row" }, "tolerance", tol, by), zone, msg, summary, results, more);
}

registerPage("search", { nav: "Search by photo", order: 50, view: (show) => viewSearch(show) });
