// The /dev/chat page: sends the farmer's actions to /dev/chat/api/* (each becomes a real signed webhook)
// and polls the conversation once a second. Plain JavaScript, no build step.
"use strict";

const API = "/dev/chat/api";
const POLL_MS = 1000;
const $ = (selector) => document.querySelector(selector);
const state = { phone: "", name: "", rendered: new Map(), polling: null, locale: "tr", labels: {},
  limits: {}, reactions: [], failures: [], graphWarning: "" };
const FILE_NOT_SENT = "file not sent";  // the server's title for a file WhatsApp would not send

// The simulator's own words in the farmer's language (devtools/chat_labels.py, from /config).
function L(key, params = {}) {
  const text = (state.labels[state.locale] || state.labels.tr || {})[key] || key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

// As chat_labels.file_size: 5 MB, 4,2 MB, 500 KB (a decimal comma unless English).
function formatSize(size) {
  const [value, unit] = size >= 1024 * 1024 ? [size / (1024 * 1024), "MB"] : [size / 1024, "KB"];
  const shown = value.toFixed(1).replace(/\.0$/, "");
  return `${state.locale === "en" ? shown : shown.replace(".", ",")} ${unit}`;
}

function applyLabels() {
  document.documentElement.lang = state.locale;
  for (const element of document.querySelectorAll("[data-label]")) element.textContent = L(element.dataset.label);
  for (const element of document.querySelectorAll("[data-label-placeholder]")) {
    element.placeholder = L(element.dataset.labelPlaceholder);
  }
  for (const element of document.querySelectorAll("[data-label-title]")) {
    element.title = L(element.dataset.labelTitle);
    element.setAttribute("aria-label", element.title);
  }
  const chosen = $("#fail-next").value;
  $("#fail-next").innerHTML = `<option value="">${escapeHtml(L("deliver_normally"))}</option>` +
    state.failures.map((f) => `<option value="${f.code}">${escapeHtml(L("fail_next", f))}</option>`).join("");
  $("#fail-next").value = chosen;
  if (state.graphWarning) $("#graph-warning").textContent = L("graph_warning", { base: state.graphWarning });
}

function setLocale(locale) {
  if (!locale || locale === state.locale) return;
  state.locale = locale;
  applyLabels();
  resetView();  // the bubbles' own words ("tapped", "not delivered") in the new language at the next poll
}

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
  // The server's words (a refused input) in the page's language.
  const headers = { "Accept-Language": state.locale, ...(options.headers || {}) };
  const response = await fetch(API + path, { ...options, headers });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.detail || data.title || `HTTP ${response.status}`);
    error.inChat = data.title === FILE_NOT_SENT;  // the server put the reason in the chat
    throw error;
  }
  return data;
}

function farmerFields() {
  return { phone: state.phone, name: state.name };
}

// A file the phone would not send: say why in the chat (as the server does for one it refuses).
function localNote(text) {
  const element = document.createElement("div");
  element.className = "msg";
  element.dataset.dir = "note";
  element.dataset.kind = "note";
  element.innerHTML = `<div class="text">${escapeHtml(text)}</div>`;
  $("#messages").appendChild(element);
  $("#messages").scrollTop = $("#messages").scrollHeight;
}

function fits(kind, file) {
  if (file.size <= state.limits[kind]) return true;
  localNote(L("too_large", { what: L(`kind_${kind}`), limit: formatSize(state.limits[kind]),
    size: formatSize(file.size) }));
  return false;
}

function upload(path, file, fields = {}) {
  const farmer = farmerFields();
  const form = new FormData();
  form.append("file", file);
  for (const [key, value] of Object.entries({ ...fields, ...farmer })) form.append(key, value);
  // The phone also in the address: a body over the limit is refused before its fields are read.
  return send(`${path}?phone=${encodeURIComponent(farmer.phone)}`, form, farmer);
}

// One message at a time, in the order the farmer made them, as a phone sends: a list row tapped just
// before a photo must not reach the bot after it. Each goes as the farmer who made it: the number typed
// meanwhile is the next messages' sender, not these.
let outbox = Promise.resolve();

function send(path, payload, farmer = farmerFields()) {
  const sent = outbox.then(() => deliver(path, payload, farmer));
  outbox = sent.catch(() => {});  // a send that failed does not hold back the ones after it
  return sent;
}

async function deliver(path, payload, farmer) {
  if (!farmer.phone) {
    showError(L("phone_first"));
    return;
  }
  document.body.classList.add("busy");
  try {
    await call(path, payload instanceof FormData ? { method: "POST", body: payload } : {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...farmer, ...payload }),
    });
    showError("");
  } catch (error) {
    showError(error.inChat ? "" : error.message);
  } finally {
    document.body.classList.remove("busy");
    poll();
  }
}

function ticks(status) {
  const marks = { pending: "○", sent: "✓", delivered: "✓✓", read: "✓✓", failed: L("not_delivered") };
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

function quoted(wamid) {
  const element = [...state.rendered.values()].find((e) => e.dataset.wamid === wamid);
  const text = element ? (element._message.text || element._message.kind) : "";
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

function bubbleHtml(m) {
  const parts = [];
  if (m.kind === "note") return `<div class="text">${escapeHtml(m.text)}</div>`;
  if (m.header) parts.push(`<div class="header">${escapeHtml(m.header)}</div>`);
  if (m.image_url) parts.push(`<img src="${escapeHtml(m.image_url)}" alt="">`);
  if (m.sticker_url) parts.push(`<img class="sticker" src="${escapeHtml(m.sticker_url)}" alt="">`);
  if (m.kind === "audio") {
    parts.push(`<div class="audio"><span class="audio-tag">${m.voice ? "🎤" : "🎵"} ` +
      `${escapeHtml(L(m.voice ? "voice_note" : "audio_file"))}</span>` +
      `<audio controls preload="none" src="${escapeHtml(m.audio_url || "")}"></audio></div>`);
  }
  if (m.document) {
    parts.push(`<a class="document" href="${escapeHtml(m.document.url || "")}" target="_blank" rel="noopener" ` +
      `download="${escapeHtml(m.document.filename)}">📄 <span>${escapeHtml(m.document.filename)}</span>` +
      `<small>${escapeHtml(m.document.mime_type)}</small></a>`);
  }
  if (m.kind === "reaction") {
    parts.push(`<div class="reaction">${m.text ? escapeHtml(L("reacted", { emoji: m.text })) :
      escapeHtml(L("reaction_removed"))}</div>`);
    const target = quoted(m.reply_to);
    if (target) parts.push(`<div class="quote">${escapeHtml(L("reacted_to", { text: target }))}</div>`);
    parts.push(`<div class="meta"><span class="time">${clock(m.at)}</span>${ticks(m.status)}</div>`);
    return parts.join("");
  }
  if (m.location) {
    parts.push(`<span class="location">${escapeHtml(L("location_shown", m.location))}</span>`);
  }
  if (m.kind === "button_reply" || m.kind === "list_reply" || m.kind === "button") {
    parts.push(`<div class="reply-tag">${escapeHtml(L("tapped"))}</div>`);
  }
  if (m.template) parts.push(`<div class="template-tag">${escapeHtml(L("template", { name: m.template }))}</div>`);
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
  if (m.dir === "out") {
    parts.push(`<button type="button" class="react-btn" title="${escapeHtml(L("react"))}" ` +
      `aria-label="${escapeHtml(L("react"))}">☺</button><div class="emoji-row" hidden>` +
      state.reactions.map((emoji) => `<button type="button" class="emoji" data-emoji="${escapeHtml(emoji)}" ` +
        `data-wamid="${escapeHtml(m.wamid)}">${escapeHtml(emoji)}</button>`).join("") + "</div>" +
      '<span class="reaction-badge" hidden></span>');
  }
  return parts.join("");
}

// Like WhatsApp, the farmer's latest reaction also shows as a badge on the bot's message.
function showReaction(m) {
  const target = [...state.rendered.values()].find((e) => e.dataset.wamid === m.reply_to);
  const badge = target && target.querySelector(".reaction-badge");
  if (!badge) return;
  badge.textContent = m.text;
  badge.hidden = !m.text;
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
      if (m.kind === "reaction") showReaction(m);
      added = true;
    }
    if (element.dataset.status !== (m.status || "")) {
      if (m.status === "failed" && m.dir === "out") $("#fail-next").value = "";  // the failure was used
      element.dataset.status = m.status || "";
      const shown = element.querySelector(".ticks");
      if (shown) shown.outerHTML = ticks(m.status);
    }
  }
  if (added && (nearBottom || state.rendered.size === messages.length)) box.scrollTop = box.scrollHeight;
}

async function poll() {
  if (!state.phone) return;
  const phone = state.phone;
  try {
    const data = await call(`/conversation?phone=${encodeURIComponent(phone)}`);
    if (phone !== state.phone) return;
    setLocale(data.locale);
    render(data.messages);
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

// An album: several photos chosen at once go as separate image messages, one right after the other,
// as WhatsApp delivers them; the caption goes with the first. All are made (queued) at once, so all go
// as the farmer who chose them.
function sendAlbum(files, caption) {
  const photos = files.filter((file) => fits("image", file));
  return Promise.all(photos.map((file, index) => upload("/photo", file, { caption: index ? "" : caption })));
}

function sendSamples(names, caption) {
  return Promise.all(names.map((sample, index) => send("/photo", { sample, caption: index ? "" : caption })));
}

function takeCaption() {
  const caption = $("#caption-input").value.trim();
  $("#caption-input").value = "";
  return caption;
}

function takeFiles(input) {
  const files = [...input.files];
  input.value = "";
  togglePanel(null);
  return files;
}

async function init() {
  const config = await call("/config");
  Object.assign(state, { labels: config.labels, limits: config.media_limits, reactions: config.reactions,
    failures: config.async_failures });
  applyLabels();
  const saved = JSON.parse(localStorage.getItem("ziraai.sim.farmer") || "null") || config.default_farmer;
  $("#phone").value = saved.phone;
  $("#name").value = saved.name;
  $("#farmers-list").innerHTML = config.farmers.map((f) =>
    `<option value="${escapeHtml(f.phone)}">${escapeHtml(f.name)}</option>`).join("");
  $("#samples").innerHTML = config.samples.map((s) =>
    `<button type="button" class="sample" id="sample-${escapeHtml(s.name)}" data-sample="${escapeHtml(s.name)}" ` +
    `data-label-title="${escapeHtml(s.label)}" title="${escapeHtml(L(s.label))}"><img src="${escapeHtml(s.url)}" ` +
    `alt=""><span data-label="${escapeHtml(s.label)}">${escapeHtml(L(s.label))}</span></button>`).join("");
  $("#province-select").innerHTML = config.provinces.map((p) =>
    `<option value="${escapeHtml(p.name)}">${escapeHtml(p.name)} (${p.latitude}, ${p.longitude})</option>`).join("");
  if (!config.graph_api.stand_in) {
    state.graphWarning = config.graph_api.base;
    $("#graph-warning").textContent = L("graph_warning", { base: state.graphWarning });
    $("#graph-warning").hidden = false;
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
    if (!text) return;
    $("#text-input").value = "";
    await send("/text", { text });
  });
  $("#attach-btn").addEventListener("click", () => togglePanel("#attach-panel"));
  $("#location-btn").addEventListener("click", () => togglePanel("#location-panel"));
  $("#samples").addEventListener("click", async (event) => {
    const button = event.target.closest(".sample");
    if (!button) return;
    togglePanel(null);
    await send("/photo", { sample: button.dataset.sample, caption: takeCaption() });
  });
  $("#sample-album").addEventListener("click", async () => {
    togglePanel(null);
    await sendSamples(config.samples.slice(0, 3).map((s) => s.name), takeCaption());
  });
  $("#photo-file").addEventListener("change", async () => {
    const caption = takeCaption();
    await sendAlbum(takeFiles($("#photo-file")), caption);
  });
  $("#document-file").addEventListener("change", async () => {
    const caption = takeCaption();
    const files = takeFiles($("#document-file")).filter((file) => fits("document", file));
    await Promise.all(files.map((file) => upload("/document", file, { caption })));
  });
  $("#sample-document").addEventListener("click", async () => {
    togglePanel(null);
    await send("/document", { caption: takeCaption() });
  });
  $("#audio-file").addEventListener("change", async () => {
    const files = takeFiles($("#audio-file")).filter((file) => fits("audio", file));
    await Promise.all(files.map((file) => upload("/voice", file)));
  });
  $("#sticker-file").addEventListener("change", async () => {
    const files = takeFiles($("#sticker-file")).filter((file) => fits("sticker", file));
    await Promise.all(files.map((file) => upload("/sticker", file)));
  });
  $("#sample-sticker").addEventListener("click", async () => {
    togglePanel(null);
    await send("/sticker", {});
  });
  $("#voice-btn").addEventListener("click", () => send("/voice", {}));
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
    const react = event.target.closest(".react-btn");
    if (react) {
      const row = react.parentElement.querySelector(".emoji-row");
      row.hidden = !row.hidden;
      return;
    }
    const emoji = event.target.closest(".emoji");
    if (emoji) {
      emoji.parentElement.hidden = true;
      await send("/reaction", { wamid: emoji.dataset.wamid, emoji: emoji.dataset.emoji });
    }
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
  document.body.dataset.ready = "true";  // the farmer's fields filled and every control listening
}

init().catch((error) => showError(state.labels.tr ? L("start_failed", { error: error.message }) :
  `Simülatör başlatılamadı: ${error.message}`));
