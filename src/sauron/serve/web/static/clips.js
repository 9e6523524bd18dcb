// Clips: a "Play clip" button on each alert card (#/alerts), appearance card and history
// row (#/history)
// that has a clip (data-clip, the API's clip_url, set by alerts.js and history.js); the
// MP4 plays in place. It decorates what those pages draw and needs nothing else of them.
"use strict";

(() => {
  function player(url) {
    const note = el("span", { class: "muted clip-note" });
    const video = el("video", { class: "clip-video", controls: true, preload: "auto", src: url });
    video.muted = true; // plays at once without a click (browsers allow muted autoplay)
    video.autoplay = true;
    video.playsInline = true;
    video.addEventListener("error", () => {
      note.textContent = "The clip could not be played (deleted by the retention?).";
      video.remove();
    });
    return el("div", { class: "clip" }, video, note);
  }

  function button(url, into) {
    const b = el("button", { type: "button", class: "clip-play", text: "Play clip" });
    b.addEventListener("click", () => {
      const open = into.querySelector(".clip");
      if (open) {
        open.querySelector("video")?.pause();
        open.remove();
        b.textContent = "Play clip";
      } else {
        into.append(player(url));
        b.textContent = "Close clip";
      }
    });
    return b;
  }

  // Only the API's own clip paths are followed.
  const clipUrl = (node) => (/^\/api\/(alerts|sightings)\/\d+\/clip\.mp4$/.test(node.dataset.clip || "") ? node.dataset.clip : null);

  function decorate(root) {
    for (const card of root.querySelectorAll(".card.alert[data-clip]:not([data-clip-ready]), .card.appearance[data-clip]:not([data-clip-ready])")) {
      card.dataset.clipReady = "";
      const url = clipUrl(card);
      const body = card.lastElementChild || card;
      if (url) body.append(button(url, body));
    }
    for (const row of root.querySelectorAll("tr[data-sighting]:not([data-clip-ready])")) {
      row.dataset.clipReady = "";
      const head = row.closest("table")?.querySelector("thead tr");
      if (head && !head.querySelector(".clip-head")) head.append(el("th", { class: "clip-head", text: "clip" }));
      const cell = el("td", { class: "clip-cell" });
      const url = clipUrl(row);
      if (url) cell.append(button(url, cell));
      row.append(cell);
    }
  }

  function start() {
    const view = document.getElementById("view");
    if (!view) return;
    decorate(view);
    new MutationObserver(() => decorate(view)).observe(view, { childList: true, subtree: true });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
