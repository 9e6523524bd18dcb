// Alerts: the list (#/alerts), the count badge in the menu and the pop-ups as alerts arrive.
"use strict";

function alertItem(a) {
  return el("div", { class: "card alert", "data-alert": a.id },
    a.snapshot_url ? el("img", { src: a.snapshot_url, alt: `snapshot of ${a.person}` }) : null,
    el("div", {},
      el("div", {}, el("strong", { class: "alert-person", text: a.person }), " on ",
         el("span", { class: "alert-camera", text: a.camera })),
      el("div", { class: "muted", text: `${fmtTime(a.ts)} · distance ${fmtDist(a.distance)}` })));
}

function onAlert(a) {
  state.alerts.unshift(a);
  state.unseen += 1;
  const badge = document.getElementById("alert-count");
  badge.textContent = String(state.unseen);
  badge.hidden = false;
  toast(el("div", { "data-alert": a.id },
    a.snapshot_url ? el("img", { src: a.snapshot_url, alt: "" }) : null,
    el("div", {}, el("strong", { text: `Alert: ${a.person}` }),
       el("div", { text: `${a.camera} · ${fmtTime(a.ts)} · distance ${fmtDist(a.distance)}` }))));
  const list = document.getElementById("alert-list");
  if (list) list.prepend(alertItem(a));
}

async function viewAlerts(show = render) {
  state.unseen = 0;
  document.getElementById("alert-count").hidden = true;
  const alerts = await api("/api/alerts?limit=100");
  show(el("h2", { text: "Alerts" }),
    el("div", { class: "alerts", id: "alert-list" }, alerts.map(alertItem)));
}

onEvent("alert", onAlert);
registerPage("alerts", { nav: "Alerts", order: 30, badge: "alert-count", view: (show) => viewAlerts(show) });
