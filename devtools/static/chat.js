// The /dev/chat page: sends the farmer's actions to /dev/chat/api/* (each becomes a real signed webhook)
// and polls the conversation once a second. Plain JavaScript, no build step.
"use strict";

const API = "/dev/chat/api";
const POLL_MS = 1000;
const $ = (selector) => document.querySelector(selector);
const state = { phone: "", name: "", rendered: new Map(), polling: null, busy: false };

function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
    "'": "&#39;" })[c]);
}

// WhatsApp's *bold* and _italic_, and clickable links; everything else stays plain text.
function formatText(text) {
  return escapeHtml(text)
    .replace(/(https?:\/\/[^\s<]+[^\s<.,;:!?)'"])/g, '<a href="$1" target="_blank" rel="noopener">$1</a>')
    .replace(/(^|\s)\*([^*\n]+)\*(?=\s|$|[.,!?])/g, "$1<strong>$2</strong>")
    .replace(/(^|\s)_([^_\n]+)_(?=\s|$|[.,!?])/g, "$1<em>$2</em>");
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function call(path, options = {}) {
  const response = await fetch(API + path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(data.detail || data.title || `HTTP ${response.status}`);
  }
  return data;
}

function farmerFields() {
  return { phone: state.phone, name: state.name };
}

async function send(path, payload) {
  if (!state.phone) {
    showError("Type the farmer's number first.");
    return;
  }
  state.busy = true;
  document.body.classList.add("busy");
  try {
    const isForm = payload instanceof FormData;
    if (isForm) {
      for (const [key, value] of Object.entries(farmerFields())) payload.append(key, value);
    }
    await call(path, isForm ? { method: "POST", body: payload } : {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...farmerFields(), ...payload }),
    });
    showError("");
  } catch (error) {
    showError(error.message);
  } finally {
    state.busy = false;
    document.body.classList.remove("busy");
    poll();
  }
}

function ticks(status) {
  const marks = { pending: "○", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "! not delivered" };
  return `<span class="ticks ${escapeHtml(status || "none")}" data-status="${escapeHtml(status || "")}">` +
    `${marks[status] || ""}</span>`;
}

function clock(at) {
  const date = new Date(at * 1000);
  return date.toLocaleTimeString("tr-TR", { hour: "2-digit", minute: "2-digit" });
}

function tapButton(choice, wamid) {
  return `<button type="button" class="reply-btn" data-reply-id="${escapeHtml(choice.id)}" ` +
    `data-wamid="${escapeHtml(wamid)}" data-kind="${escapeHtml(choice.kind)}">${escapeHtml(choice.title)}</button>`;
}

function bubbleHtml(m) {
  const parts = [];
  if (m.header) parts.push(`<div class="header">${escapeHtml(m.header)}</div>`);
  if (m.image_url) parts.push(`<img src="${escapeHtml(m.image_url)}" alt="photo">`);
  if (m.location) {
    parts.push(`<span class="location">Konum: ${escapeHtml(m.location.latitude)}, ${escapeHtml(m.location.longitude)}</span>`);
  }
  if (m.kind === "button_reply" || m.kind === "list_reply" || m.kind === "button") {
    parts.push('<div class="reply-tag">↩︎ tapped</div>');
  }
  if (m.template) parts.push(`<div class="template-tag">template ${escapeHtml(m.template)}</div>`);
  if (m.text) parts.push(`<div class="text">${formatText(m.text)}</div>`);
  if (m.footer) parts.push(`<div class="footer">${escapeHtml(m.footer)}</div>`);
  parts.push(`<div class="meta"><span class="time">${clock(m.at)}</span>${ticks(m.status)}</div>`);
  if (m.buttons && m.buttons.length) {
    parts.push(`<div class="choices">${m.buttons.map((b) => tapButton(b, m.wamid)).join("")}</div>`);
  }
  if (m.list) {
    parts.push(`<div class="choices"><button type="button" class="list-open" data-wamid="${escapeHtml(m.wamid)}">` +
      `≡ ${escapeHtml(m.list.button)}</button></div>`);
  }
  return parts.join("");
}

function render(messages) {
  const box = $("#messages");
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  let added = false;
  for (const m of messages) {
    let element = state.rendered.get(m.seq);
    if (!element) {
      element = document.createElement("div");
      element.className = "msg";
      element.id = `msg-${m.seq}`;
      element.dataset.seq = m.seq;
      element.dataset.dir = m.dir;
      element.dataset.kind = m.kind;
      element.dataset.wamid = m.wamid;
      element.innerHTML = bubbleHtml(m);
      element._message = m;
      box.appendChild(element);
      state.rendered.set(m.seq, element);
      added = true;
    }
    if (element.dataset.status !== (m.status || "")) {
      if (m.status === "failed" && m.dir === "out") $("#fail-next").value = "";  // the failure was used
      element.dataset.status = m.status || "";
      element.querySelector(".ticks").outerHTML = ticks(m.status);
    }
  }
  if (added && (nearBottom || state.rendered.size === messages.length)) box.scrollTop = box.scrollHeight;
}

async function poll() {
  if (!state.phone) return;
  const phone = state.phone;
  try {
    const data = await call(`/conversation?phone=${encodeURIComponent(phone)}`);
    if (phone === state.phone) render(data.messages);
  } catch (error) {
    showError(error.message);
  }
}

function resetView() {
  state.rendered.clear();
  $("#messages").innerHTML = "";
}

function setFarmer(phone, name) {
  const changed = phone !== state.phone;
  state.phone = phone.trim();
  state.name = name.trim();
  localStorage.setItem("ziraai.sim.farmer", JSON.stringify({ phone: state.phone, name: state.name }));
  if (changed) {
    resetView();
    poll();
  }
}

function openList(wamid) {
  const element = [...state.rendered.values()].find((e) => e.dataset.wamid === wamid);
  if (!element) return;
  const m = element._message;
  $("#list-title").textContent = m.list.button;
  $("#list-rows").innerHTML = m.list.sections.map((section) =>
    (section.title ? `<div class="section-title">${escapeHtml(section.title)}</div>` : "") +
    section.rows.map((row) =>
      `<button type="button" class="list-row" data-reply-id="${escapeHtml(row.id)}" data-wamid="${escapeHtml(wamid)}">` +
      `${escapeHtml(row.title)}${row.description ? `<span class="row-desc">${escapeHtml(row.description)}</span>` : ""}` +
      "</button>").join("")).join("");
  $("#list-sheet").hidden = false;
}

function togglePanel(id) {
  for (const panel of ["#attach-panel", "#location-panel"]) {
    $(panel).hidden = panel === id ? !$(panel).hidden : true;
  }
}

async function init() {
  const config = await call("/config");
  const saved = JSON.parse(localStorage.getItem("ziraai.sim.farmer") || "null") || config.default_farmer;
  $("#phone").value = saved.phone;
  $("#name").value = saved.name;
  $("#farmers-list").innerHTML = config.farmers.map((f) =>
    `<option value="${escapeHtml(f.phone)}">${escapeHtml(f.name)}</option>`).join("");
  $("#samples").innerHTML = config.samples.map((s) =>
    `<button type="button" class="sample" id="sample-${escapeHtml(s.name)}" data-sample="${escapeHtml(s.name)}" ` +
    `title="${escapeHtml(s.label)}"><img src="${escapeHtml(s.url)}" alt="">${escapeHtml(s.label)}</button>`).join("");
  $("#province-select").innerHTML = config.provinces.map((p) =>
    `<option value="${escapeHtml(p.name)}">${escapeHtml(p.name)} (${p.latitude}, ${p.longitude})</option>`).join("");
  if (!config.graph_api.stand_in) {
    const warning = $("#graph-warning");
    warning.textContent = `The bot sends through ${config.graph_api.base}, not the local stand-in: its replies ` +
      "will not appear here.";
    warning.hidden = false;
  }
  const knownNames = new Map(config.farmers.map((f) => [f.phone, f.name]));
  $("#phone").addEventListener("change", () => {
    const phone = $("#phone").value.trim();
    if (knownNames.has(phone) && knownNames.get(phone)) $("#name").value = knownNames.get(phone);
    setFarmer(phone, $("#name").value);
  });
  $("#name").addEventListener("change", () => setFarmer($("#phone").value, $("#name").value));
  $("#farmer-panel").addEventListener("submit", (event) => event.preventDefault());
  $("#farmer-toggle").addEventListener("click", () => $("#farmer-panel").classList.toggle("collapsed"));
  $("#fail-next").innerHTML = '<option value="">Deliver normally</option>' + config.async_failures.map((f) =>
    `<option value="${f.code}">Fail next: ${f.code} ${escapeHtml(f.title)}</option>`).join("");
  $("#fail-next").addEventListener("change", async () => {
    const value = $("#fail-next").value;
    await call("/fail-next", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ phone: state.phone, code: value ? Number(value) : null }) })
      .catch((error) => showError(error.message));
  });
  $("#clear-btn").addEventListener("click", async () => {
    await call("/clear", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ phone: state.phone }) }).catch((error) => showError(error.message));
    resetView();
  });

  $("#composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("#text-input").value.trim();
    if (!text || state.busy) return;
    $("#text-input").value = "";
    await send("/text", { text });
  });
  $("#attach-btn").addEventListener("click", () => togglePanel("#attach-panel"));
  $("#location-btn").addEventListener("click", () => togglePanel("#location-panel"));
  $("#samples").addEventListener("click", async (event) => {
    const button = event.target.closest(".sample");
    if (!button) return;
    togglePanel(null);
    const caption = $("#caption-input").value.trim();
    $("#caption-input").value = "";
    await send("/photo", { sample: button.dataset.sample, caption });
  });
  $("#photo-file").addEventListener("change", async () => {
    const file = $("#photo-file").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file);
    form.append("caption", $("#caption-input").value.trim());
    $("#caption-input").value = "";
    $("#photo-file").value = "";
    togglePanel(null);
    await send("/photo", form);
  });
  $("#send-location-btn").addEventListener("click", async () => {
    togglePanel(null);
    await send("/location", { province: $("#province-select").value });
  });
  $("#messages").addEventListener("click", async (event) => {
    const reply = event.target.closest(".reply-btn");
    if (reply) {
      await send("/reply", { wamid: reply.dataset.wamid, id: reply.dataset.replyId });
      return;
    }
    const open = event.target.closest(".list-open");
    if (open) openList(open.dataset.wamid);
  });
  $("#list-rows").addEventListener("click", async (event) => {
    const row = event.target.closest(".list-row");
    if (!row) return;
    $("#list-sheet").hidden = true;
    await send("/reply", { wamid: row.dataset.wamid, id: row.dataset.replyId });
  });
  $("#list-close").addEventListener("click", () => { $("#list-sheet").hidden = true; });

  setFarmer($("#phone").value, $("#name").value);
  state.polling = setInterval(poll, POLL_MS);
}

init().catch((error) => showError(`The simulator could not start: ${error.message}`));
