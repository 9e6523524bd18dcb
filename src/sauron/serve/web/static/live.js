// Live: the camera wall (#/live), one camera (#/camera/NAME) and who is in view now.
// Cameras are those the server knows (its settings, frames seen, and the ingest
// processes' reports): a camera reported later gets its tile when the next status arrives.
"use strict";

function cameraTile(cam, single) {
  const name = encodeURIComponent(cam.camera);
  return el("div", { class: "tile" + (single ? " single" : ""), "data-camera": cam.camera },
    el("a", { href: `#/camera/${name}` },
       el("img", { class: "stream", src: `/api/cameras/${name}/stream.mjpeg`, alt: `camera ${cam.camera}` })),
    el("div", { class: "caption" },
       el("span", { class: "name", text: cam.camera }),
       el("span", { class: "state" }),
       el("span", { class: "stats" }),
       el("span", { class: "inview" }),
       el("span", { class: "health muted" })));
}

// What the ingest side says beyond the state: why it failed, restarts, silence.
function ingestText(ing) {
  if (!ing) return "";
  const parts = [];
  if (ing.stale) parts.push(`ingest silent for ${Math.round(ing.age_s)} s`);
  if (ing.error) parts.push(ing.error);
  if (ing.restarts) parts.push(`${ing.restarts} restart(s)`);
  if (ing.host) parts.push(`ingest on ${ing.host}`);
  return parts.join(" · ");
}

function updateTiles() {
  const grid = document.getElementById("camera-grid");
  if (grid) {  // the wall: tiles for cameras reported since it was drawn
    for (const cam of state.cameras) {
      if (!grid.querySelector(`.tile[data-camera="${CSS.escape(cam.camera)}"]`)) grid.append(cameraTile(cam, false));
    }
    const none = document.getElementById("no-camera");
    if (none) none.hidden = state.cameras.length > 0;
  }
  for (const cam of state.cameras) {
    const tile = document.querySelector(`.tile[data-camera="${CSS.escape(cam.camera)}"]`);
    if (!tile || cam.state === undefined) continue;
    const st = tile.querySelector(".state");
    st.textContent = cam.state;
    st.className = "state " + cam.state;
    tile.querySelector(".stats").textContent =
      `${cam.fps.toFixed(1)} fps · latency ${cam.latency_ms === null ? "–" : Math.round(cam.latency_ms) + " ms"}`;
    tile.querySelector(".inview").textContent = cam.names.length ? "In view: " + cam.names.join(", ") : "";
    tile.querySelector(".health").textContent = ingestText(cam.ingest);
  }
}

// "In view now" across every camera, refreshed while it is on the page.
function inViewPanel(only) {
  const list = el("ul", { class: "inview-list", id: "inview-list" });
  const panel = el("section", { class: "card inview-panel", id: "inview" },
    el("h3", { text: only ? `In view now on ${only}` : "In view now" }), list);
  async function refresh() {
    if (!panel.isConnected && panel.dataset.drawn) return;  // the page was left
    try {
      const rows = (await api("/api/inview")).filter(r => !only || r.camera === only);
      list.replaceChildren(...rows.map(r => el("li", { "data-person": r.person, "data-camera": r.camera },
        r.snapshot_url ? el("img", { src: r.snapshot_url, alt: "" }) : null,
        el("strong", { text: personName(r.person) }), " on ",
        el("a", { href: `#/camera/${encodeURIComponent(r.camera)}`, text: r.camera }),
        el("span", { class: "muted", text: ` · ${ago(r.last_seen)}` }))));
      if (!rows.length) list.append(el("li", { class: "muted", text: "Nobody on the watchlist is in view." }));
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) list.replaceChildren(el("li", { class: "error", text: errorText(e) }));
      else return;
    }
    panel.dataset.drawn = "1";
    setTimeout(refresh, 2000);
  }
  refresh();
  return panel;
}

function ago(ts) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
  return s < 2 ? "now" : `${s} s ago`;
}

async function viewLive(show = render) {
  const cams = await api("/api/cameras");
  state.cameras = cams;
  const grid = el("div", { class: "grid", id: "camera-grid" }, cams.map(c => cameraTile(c, false)));
  show(el("h2", { text: "Cameras" }), inViewPanel(null), grid,
    el("p", { class: "muted", id: "no-camera", hidden: cams.length > 0, text: "No camera yet." }));
  updateTiles();
}

async function viewCamera(name, show = render) {
  const cams = await api("/api/cameras");
  state.cameras = cams;
  const cam = cams.find(c => c.camera === name) || { camera: name };
  show(el("h2", {}, el("a", { href: "#/live", text: "Cameras" }), " / ", name), cameraTile(cam, true),
    inViewPanel(name));
  updateTiles();
}

onEvent("cameras", (cams) => { state.cameras = cams; updateTiles(); });
registerPage("live", { nav: "Live", order: 10, view: (show) => viewLive(show) });
registerPage("camera", { navFor: "live", view: (show, args) => viewCamera(decodeURIComponent(args[0] || ""), show) });
