"use strict";
// The Review view's day (review.js opens it): per camera a timeline of the day shown (coverage, gaps, events
// coloured by label, the playhead, the export span, the keyboard's cursor), click → play from there (the bars' keys,
// zoom and pan are review-timeline.js's); and the day's events with their snapshots, filtered by camera and label,
// click → play from just before the event. Uses index.html's withToken and call (the store's /api: `timeline`,
// `events`).
window.reviewDay = ({ state, play, $, pad, iso, clockText, dateValue, addDays }) => {
  const PREROLL_MS = 5000;  // an event plays from this long before its start
  const EVENT_PAGES = 5;    // at most 5 pages of 1,000 events for a day
  let daySeq = 0;
  const bars = window.reviewTimeline({ state, play, $, pad, clockText, dateValue, addDays, redraw: drawLanes });

  // --- timelines ---------------------------------------------------------------------------------
  const LABEL_COLOURS = { person: "#f0a030", car: "#4aa3df", truck: "#3a7bbf", bicycle: "#40c0a0", dog: "#d06ad0",
                          cat: "#c080f0", bird: "#a0d040", motion: "#8a8a8a", loss: "#e04040",
                          "camera-stalled": "#b03060" };
  function labelOf(e) { return e.label || (e.labels && Object.keys(e.labels)[0]) || e.kind; }
  function colourOf(label) {
    if (LABEL_COLOURS[label]) return LABEL_COLOURS[label];
    let h = 0;
    for (const c of label) h = (h * 31 + c.charCodeAt(0)) % 360;
    return `hsl(${h} 60% 60%)`;
  }

  function buildLanes() {
    const box = $("rv-timelines");
    box.textContent = "";
    state.lanes.clear();
    const scale = document.createElement("div");
    scale.className = "rv-scale";  // its labels: review-timeline.js's drawScale, for the window shown
    box.append(scale);
    for (const camera of state.cameras) {
      const el = document.createElement("div");
      el.className = "rv-lane";
      el.dataset.camera = camera;
      const name = document.createElement("span");
      name.className = "rv-lane-name";
      name.textContent = camera;
      const canvas = document.createElement("canvas");
      el.append(name, canvas);
      box.append(el);
      const lane = { camera, el, canvas, intervals: [], gaps: [], error: null };
      bars.attach(lane);
      state.lanes.set(camera, lane);
    }
    const cams = $("ev-camera"), chosen = cams.value;
    cams.length = 1;
    for (const camera of state.cameras) cams.add(new Option(camera, camera, false, camera === chosen));
    drawLanes();
  }

  function drawLanes() {
    const scale = document.querySelector("#rv-timelines .rv-scale");
    if (scale) bars.drawScale(scale);
    state.lanes.forEach(drawLane);
  }

  function drawLane(lane) {
    if (!lane) return;
    bars.aria(lane);
    const c = lane.canvas, dpr = window.devicePixelRatio || 1, w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const ctx = c.getContext("2d"), [from, to] = bars.view();  // the window every bar shows (zoomed or the day)
    const x = (ms) => Math.max(0, Math.min(w, (ms - from) / (to - from) * w));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#1e1e1e";
    ctx.fillRect(0, 0, w, h);
    ctx.fillStyle = "#5a2626";  // a gap: recording stopped and resumed (not the hours before or after any)
    const span = (a, b) => ctx.fillRect(x(a / 1000), h * 0.35, Math.max(1, x(b / 1000) - x(a / 1000)), h * 0.65);
    for (const [a, b] of innerGaps(lane)) span(a, b);
    ctx.fillStyle = "#2f7a45";  // recorded
    for (const [a, b] of lane.intervals) span(a, b);
    for (const e of state.events) {  // events along the top, coloured by label
      if (e.camera !== lane.camera) continue;
      ctx.fillStyle = colourOf(labelOf(e));
      ctx.fillRect(x(e.start_us / 1000), 0, Math.max(2, x(e.end_us / 1000) - x(e.start_us / 1000)), h * 0.3);
    }
    if (state.span && state.spanCamera === lane.camera) {
      ctx.fillStyle = "#ffffff30";
      ctx.fillRect(x(state.span[0]), 0, Math.max(2, x(state.span[1]) - x(state.span[0])), h);
    }
    if (state.win && state.win.camera === lane.camera && state.shownMs !== null) {
      ctx.fillStyle = "#fff";
      ctx.fillRect(x(state.shownMs) - 1, 0, 2, h);
    }
    if (document.activeElement === c && state.cursor !== null && state.cursor >= from && state.cursor < to) {
      ctx.fillStyle = "#7cc7ff";  // the keyboard's cursor: a line and a notch above and below
      const cx = x(state.cursor);
      ctx.fillRect(cx - 1, 0, 2, h);
      ctx.beginPath();
      ctx.moveTo(cx - 5, 0); ctx.lineTo(cx + 5, 0); ctx.lineTo(cx, 6); ctx.closePath();
      ctx.moveTo(cx - 5, h); ctx.lineTo(cx + 5, h); ctx.lineTo(cx, h - 6); ctx.closePath();
      ctx.fill();
    }
    if (lane.error) { ctx.fillStyle = "#e88"; ctx.font = "11px system-ui"; ctx.fillText(lane.error, 4, h - 4); }
    lane.el.classList.toggle("playing", !!state.win && state.win.camera === lane.camera);
  }

  function innerGaps(lane) {
    if (!lane.intervals.length) return [];
    const first = lane.intervals[0][0], last = lane.intervals.at(-1)[1];
    return lane.gaps.map(([a, b]) => [Math.max(a, first), Math.min(b, last)]).filter(([a, b]) => b > a);
  }

  function setDay(dayMs) {
    state.day = dayMs;
    bars.reset();
    $("rv-date").value = dateValue(dayMs);
    loadDay();
  }

  async function loadDay() {
    const seq = ++daySeq, day = state.day, from_us = day * 1000, to_us = addDays(day, 1) * 1000;
    const utc_offset_s = -new Date(day).getTimezoneOffset() * 60;
    for (const lane of state.lanes.values()) { lane.intervals = []; lane.gaps = []; lane.error = null; }
    drawLanes();
    const timelines = Promise.all(state.cameras.map((camera) =>
      call("timeline", { camera, from_us, to_us, bucket: "hour", utc_offset_s })));
    const events = [];
    let after = null;
    for (let page = 0; page < EVENT_PAGES; page++) {
      const reply = await call("events", { from_us, to_us, limit: 1000, after });
      if (reply.error) { $("ev-count").textContent = reply.error.message; break; }
      events.push(...reply.result.items);
      after = reply.result.next;
      if (!after) break;
    }
    const replies = await timelines;
    if (seq !== daySeq) return;
    state.cameras.forEach((camera, i) => {
      const lane = state.lanes.get(camera), reply = replies[i];
      if (!lane) return;
      if (reply.error) lane.error = reply.error.message;
      else { lane.intervals = reply.result.intervals; lane.gaps = reply.result.gaps; }
    });
    state.events = events;
    state.loadedDay = day;  // for scripts: the day's timelines and events are drawn
    drawLanes();
    // Today's timelines are read again every 30 s: the list is made again only when its events changed (a person
    // scrolling it keeps their place).
    const signature = `${day} ` + events.map((e) => `${e.id}:${e.end_us}:${e.label}`).join();
    if (signature !== state.eventsSignature) { state.eventsSignature = signature; listEvents(); }
  }

  // --- events ------------------------------------------------------------------------------------
  function listEvents() {
    const cam = $("ev-camera").value, labelSel = $("ev-label"), chosen = labelSel.value;
    const labels = [...new Set(state.events.map(labelOf))].sort();
    labelSel.length = 1;
    for (const l of labels) labelSel.add(new Option(l, l, false, l === chosen));
    const wanted = labelSel.value;  // newest first
    const shown = state.events.filter((e) => (!cam || e.camera === cam) && (!wanted || labelOf(e) === wanted)).reverse();
    $("ev-count").textContent = `${shown.length} event${shown.length === 1 ? "" : "s"}`;
    const list = $("ev-list");
    list.textContent = "";
    for (const e of shown.slice(0, 500)) {
      const li = document.createElement("li");
      li.dataset.eventId = e.id;
      li.dataset.camera = e.camera;
      const img = document.createElement("img");
      img.loading = "lazy";
      img.alt = "";
      img.src = e.snapshot ? withToken(`/snapshots/${e.id}.jpg`, "?")
        : recordingThumb(e.camera, (e.thumb_us || e.start_us) / 1000);
      img.onerror = () => img.classList.add("missing");
      const label = labelOf(e), score = e.label_score ?? e.score;
      const text = document.createElement("div");
      const tag = document.createElement("span");
      tag.className = "rv-tag";
      tag.style.background = colourOf(label);
      tag.textContent = label;
      const what = document.createElement("div");
      const seconds = Math.round((e.end_us - e.start_us) / 1e6);
      what.textContent = `${e.camera} · ${clockText(e.start_us / 1000)} · ${seconds} s` +
        (score !== null && score !== undefined ? ` · ${Number(score).toFixed(2)}` : "");
      text.append(tag, what);
      li.append(img, text);
      li.addEventListener("click", () => play(e.camera, Math.round(e.start_us / 1000) - PREROLL_MS));
      list.append(li);
    }
  }
  function recordingThumb(camera, ms) {
    return withToken(`/thumbs/${encodeURIComponent(camera)}.jpg?at=${encodeURIComponent(iso(ms))}&width=160`, "&");
  }

  return { buildLanes, drawLanes, drawLane, setDay, loadDay, listEvents };
};
