// Search by photo: every stored sighting of the face in a photo, nearest first.
"use strict";

async function viewSearch(show = render) {
  const msg = el("p", { class: "error", id: "search-error" });
  const summary = el("p", { class: "muted", id: "search-summary" });
  const results = el("div", { class: "results", id: "search-results" });
  const tol = el("input", { type: "number", step: "0.05", min: "0.1", max: "1.5", value: "0.6", name: "tolerance" });
  async function search(files) {
    if (!files.length) return;
    const fd = new FormData();
    fd.append("photo", files[0]);
    fd.append("tolerance", tol.value);
    msg.textContent = "";
    summary.textContent = "searching…";
    results.replaceChildren();
    try {
      const r = await api("/api/search", { method: "POST", body: fd });
      summary.textContent = `${r.total} sighting(s) within ${r.tolerance} among ${r.searched} stored faces (${r.took_ms} ms)`;
      r.items.forEach(s => results.append(el("div", { class: "card result", "data-sighting": s.id },
        s.snapshot_url ? el("img", { src: s.snapshot_url, alt: "" }) : null,
        el("div", {}, el("strong", { text: personName(s.person) || "unknown" }), ` · ${s.camera}`),
        el("div", { class: "muted", text: `${fmtTime(s.ts)} · distance ${fmtDist(s.query_distance)}` }))));
    } catch (e) { summary.textContent = ""; msg.textContent = errorText(e); }
  }
  const zone = dropZone("Drop a face photo here or", search);
  zone.input.id = "search-photo";
  zone.input.removeAttribute("multiple");
  show(el("h2", { text: "Search by photo" }),
    el("div", { class: "row" }, "tolerance", tol), zone, msg, summary, results);
}

registerPage("search", { nav: "Search by photo", order: 50, view: (show) => viewSearch(show) });
