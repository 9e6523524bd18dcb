// Live: the camera grid (#/live) and one camera (#/camera/NAME).
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
       el("span", { class: "inview" })));
}

function updateTiles() {
  for (const cam of state.cameras) {
    const tile = document.querySelector(`.tile[data-camera="${CSS.escape(cam.camera)}"]`);
    if (!tile) continue;
    const st = tile.querySelector(".state");
    st.textContent = cam.state;
    st.className = "state " + cam.state;
    tile.querySelector(".stats").textContent =
      `${cam.fps.toFixed(1)} fps · latency ${cam.latency_ms === null ? "–" : Math.round(cam.latency_ms) + " ms"}`;
    tile.querySelector(".inview").textContent = cam.names.length ? "In view: " + cam.names.join(", ") : "";
  }
}

async function viewLive(show = render) {
  const cams = await api("/api/cameras");
  state.cameras = cams;
  const grid = el("div", { class: "grid" }, cams.map(c => cameraTile(c, false)));
  show(el("h2", { text: "Cameras" }), cams.length ? grid : el("p", { class: "muted", text: "No camera yet." }));
  updateTiles();
}

async function viewCamera(name, show = render) {
  const cams = await api("/api/cameras");
  state.cameras = cams;
  const cam = cams.find(c => c.camera === name) || { camera: name };
  show(el("h2", {}, el("a", { href: "#/live", text: "Cameras" }), " / ", name), cameraTile(cam, true));
  updateTiles();
}

onEvent("cameras", (cams) => { state.cameras = cams; updateTiles(); });
registerPage("live", { nav: "Live", order: 10, view: (show) => viewLive(show) });
registerPage("camera", { navFor: "live", view: (show, args) => viewCamera(decodeURIComponent(args[0] || ""), show) });
