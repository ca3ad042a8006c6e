"use strict";
// The Review view of the store's page (index.html): per camera a day's timeline (coverage, gaps, events coloured
// by label), recorded playback through GET /recordings/CAMERA.mp4 with the capture time of the frame shown
// (GET /recordings/CAMERA.json maps media time to capture time through its pieces), the day's events with their
// snapshots, and an export link. Uses index.html's token, withToken, call and showView.
// For scripts and tests: the <video> carries data-camera and data-start (ISO capture time of the first frame it
// was asked to show); #rv-clock carries data-capture (ISO capture time of the frame on screen).
(() => {
  const WINDOW_MS = 10 * 60 * 1000;  // one /recordings request: from the moment asked for to 10 min later
  const PREROLL_MS = 5000;           // an event plays from this long before its start
  const STEP_MS = 10000;             // ← / →
  const SPAN_MS = 60 * 1000;         // the export span until In / Out say otherwise
  const EVENT_PAGES = 5;             // at most 5 pages of 1,000 events for a day
  const SPEEDS = [1, 2, 4, 8];
  const $ = (id) => document.getElementById(id);
  const clock = $("rv-clock"), message = $("rv-message");
  // Put on the page when Review is first shown (the Live view's page has only its tiles' videos).
  const video = Object.assign(document.createElement("video"), { id: "rv-video", muted: true, playsInline: true,
                                                                 preload: "auto" });

  const state = {
    day: midnight(Date.now()),  // local midnight of the day shown (ms)
    cameras: [],
    lanes: new Map(),           // camera -> {camera, el, canvas, intervals, gaps, error}
    events: [],                 // the day's events, every camera
    win: null,                  // the /recordings window playing: {camera, fromMs, toMs, pieces, fps}
    shownMs: null,              // capture time of the frame on screen
    span: null,                 // [fromMs, toMs] to export
  };
  let playSeq = 0, daySeq = 0;

  // --- time --------------------------------------------------------------------------------------
  const iso = (ms) => new Date(ms).toISOString();
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  function addDays(dayMs, n) {  // local midnight n days later (23 or 25 h away across a DST change)
    const d = new Date(dayMs);
    return new Date(d.getFullYear(), d.getMonth(), d.getDate() + n).getTime();
  }
  function midnight(ms) { return addDays(ms, 0); }
  function dateValue(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }
  function clockText(ms, millis) {
    const d = new Date(ms);
    const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return millis ? `${dateValue(ms)} ${hms}.${pad(d.getMilliseconds(), 3)}` : hms;
  }
  function recordingUrl(camera, fromMs, toMs, ext) {
    return withToken(`/recordings/${encodeURIComponent(camera)}.${ext}?from=${encodeURIComponent(iso(fromMs))}` +
                     `&to=${encodeURIComponent(iso(toMs))}`, "&");
  }

  // Media time (s, in the file) ↔ capture time (ms), through the pieces of the window's JSON.
  function mediaToCapture(t) {
    const pieces = state.win && state.win.pieces;
    if (!pieces || !pieces.length) return null;
    let p = pieces[0];
    for (const q of pieces) { if (q.media <= t + 1e-6) p = q; else break; }
    return Math.min(p.start + (t - p.media) * 1000, p.end);
  }
  function captureToMedia(ms) {  // null: not in this window
    const w = state.win;
    if (!w || !w.pieces || !w.pieces.length || ms < w.pieces[0].start - 1 || ms >= w.pieces.at(-1).end) return null;
    for (const p of w.pieces) {
      if (ms < p.start) return p.media;  // in a gap: where the footage resumes
      if (ms < p.end) return p.media + (ms - p.start) / 1000;
    }
    return null;
  }

  // --- playback ----------------------------------------------------------------------------------
  function say(text, kind) {
    message.textContent = text;
    message.className = "rv-message " + (kind || "");
    message.hidden = !text;
  }

  async function play(camera, atMs, { paused = false, continuing = false } = {}) {
    const seq = ++playSeq;
    state.win = { camera, fromMs: atMs, toMs: atMs + WINDOW_MS, pieces: null, fps: 15, ready: false };
    state.shownMs = atMs;  // where ← and → count from until a frame is shown
    state.shownMedia = null;
    if (!state.span || state.spanCamera !== camera) setSpan(camera, atMs, atMs + SPAN_MS);
    say("");
    video.dataset.camera = camera;
    video.dataset.start = iso(atMs);
    video.src = recordingUrl(camera, atMs, atMs + WINDOW_MS, "mp4");
    video.playbackRate = video.defaultPlaybackRate = Number($("rv-speed").value);
    $("rv-camera").textContent = camera;
    clock.textContent = `loading ${clockText(atMs, true)}…`;
    if (midnight(atMs) !== state.day) setDay(midnight(atMs)); else drawLanes();
    let reply;
    try {
      reply = await fetch(recordingUrl(camera, atMs, atMs + WINDOW_MS, "json"));
    } catch (e) {
      if (seq === playSeq) stopWith(`the store cannot be reached: ${e.message}`);
      return;
    }
    if (seq !== playSeq) return;
    if (!reply.ok) {  // the store's one-line reason: 404 nothing recorded or unknown camera, 400 bad time
      const why = (await reply.text()).trim() || reply.statusText;
      if (seq !== playSeq) return;
      if (continuing && reply.status === 404) {
        video.removeAttribute("src");
        video.load();
        carryOn(camera, atMs, seq);
        return;
      }
      stopWith(`${camera} at ${clockText(atMs, true)}: ${why} (HTTP ${reply.status})`);
      return;
    }
    const sidecar = await reply.json();
    if (seq !== playSeq) return;
    const pieces = sidecar.pieces.map((p) => ({ media: p.media_s, start: Date.parse(p.start), end: Date.parse(p.end),
                                                frames: p.frames }));
    const frames = pieces.reduce((n, p) => n + p.frames, 0), ms = pieces.reduce((n, p) => n + p.end - p.start, 0);
    Object.assign(state.win, { pieces, fps: frames > 1 && ms > 0 ? frames / (ms / 1000) : 15,
                               truncated: sidecar.truncated });
    const offset = captureToMedia(atMs) || 0;
    if (offset > 0.001) {  // the file starts at the keyframe before the moment: show the moment itself
      if (video.readyState < 1 && !video.error) {
        await new Promise((r) => {
          video.addEventListener("loadedmetadata", r, { once: true });
          video.addEventListener("error", r, { once: true });
        });
      }
      if (seq !== playSeq) return;
      if (video.error) { mediaError(); return; }
      video.currentTime = offset;
    }
    state.win.ready = true;  // seeks and frame steps from here on are inside this window
    if (!paused) video.play().catch(() => {});
  }

  // A window played out and the next 10 min hold nothing: the next recording of the day shown, or (near the live
  // edge) newer footage as the node uploads it.
  function carryOn(camera, afterMs, seq) {
    const lane = state.lanes.get(camera);
    const next = lane && lane.intervals.map(([a]) => a / 1000).find((a) => a > afterMs);
    if (next !== undefined) { play(camera, next, { continuing: true }); return; }
    if (Date.now() - afterMs > 3600 * 1000) {
      say(`${camera}: no recordings after ${clockText(afterMs, true)}`);
      return;
    }
    say(`${camera}: no footage after ${clockText(afterMs, true)} yet; looking again every 5 s`);
    setTimeout(() => { if (seq === playSeq) play(camera, afterMs, { continuing: true }); }, 5000);
  }

  function stopWith(text) {
    video.removeAttribute("src");
    video.load();
    say(text, "bad");
  }

  function seekTo(ms) {  // inside the window: seek in the file; outside it: a new window from there
    const w = state.win;
    if (!w) return;
    const t = w.ready ? captureToMedia(ms) : null;
    if (t === null) { play(w.camera, ms, { paused: video.paused }); return; }
    state.shownMs = ms;
    video.currentTime = t;
  }

  function stepFrame(direction) {
    const w = state.win;
    if (!w || !w.ready || !video.paused) return;
    // From the frame on screen (its own media time), 1 ms into the next or previous one: currentTime + 1/fps can
    // fall a rounding error short of the next frame and show the same one again.
    const shown = state.shownMedia ?? video.currentTime;
    const t = shown + direction / w.fps + 0.001;
    if (t < 0) seekTo(state.shownMs - 1000 / w.fps);
    else video.currentTime = t;
  }

  video.addEventListener("ended", () => {  // the window played out: the next one from where it ended
    const w = state.win;
    if (!w || !w.pieces || !w.pieces.length) return;
    const next = Math.max(w.pieces.at(-1).end, w.fromMs + 1);
    play(w.camera, next, { continuing: true });
  });
  // A media error means something only once the JSON said the footage is there (a refused request's JSON says why).
  function mediaError() {
    if (video.error && video.getAttribute("src") && state.win && state.win.pieces) {
      const what = video.error.message || "media error " + video.error.code;
      say(`this browser could not play the footage: ${what}`, "bad");
    }
  }
  video.addEventListener("error", mediaError);
  video.addEventListener("play", () => { $("rv-play").textContent = "❚❚"; });
  video.addEventListener("pause", () => {
    $("rv-play").textContent = "▶";
    // Paused, the video's time can be ahead of the last frame painted (a busy machine skips frames): the time
    // goes back to the frame on screen, so the readout, the export's In/Out and frame steps all mean that frame.
    const w = state.win, shown = state.shownMedia;
    if (w && w.ready && shown !== null && !video.ended && Math.abs(video.currentTime - shown) > 0.5 / w.fps) {
      video.currentTime = shown + 0.001;
    }
  });

  function onFrame(_, meta) {  // each frame presented: its capture time
    const at = mediaToCapture(meta.mediaTime);
    if (at !== null) {
      state.shownMs = at;
      state.shownMedia = meta.mediaTime;
      showClock();
      drawLane(state.lanes.get(state.win.camera));
    }
    video.requestVideoFrameCallback(onFrame);
  }
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) video.requestVideoFrameCallback(onFrame);
  else video.addEventListener("timeupdate", () => onFrame(0, { mediaTime: video.currentTime }));

  function showClock() {
    if (state.shownMs === null) return;
    clock.textContent = clockText(state.shownMs, true);
    clock.dataset.capture = iso(state.shownMs);
  }

  // --- export span -------------------------------------------------------------------------------
  function setSpan(camera, fromMs, toMs) {
    state.span = [fromMs, toMs];
    state.spanCamera = camera;
    const link = $("rv-export"), ok = toMs > fromMs;
    link.hidden = !ok;
    if (ok) {
      link.href = recordingUrl(camera, fromMs, toMs, "mp4");
      link.download = `${camera}-${dateValue(fromMs)}-${clockText(fromMs).replaceAll(":", "")}.mp4`;
    }
    $("rv-span").textContent = ok ? `export ${camera} ${clockText(fromMs)} → ${clockText(toMs)} ` +
      `(${Math.round((toMs - fromMs) / 1000)} s)` : "export: Out must be after In";
    drawLanes();
  }
  function markIn() { if (state.win) setSpan(state.win.camera, state.shownMs, Math.max(state.span[1], state.shownMs)); }
  function markOut() { if (state.win) setSpan(state.win.camera, state.span[0], state.shownMs); }

  // --- timelines ---------------------------------------------------------------------------------
  const LABEL_COLOURS = { person: "#f0a030", car: "#4aa3df", truck: "#3a7bbf", bicycle: "#40c0a0", dog: "#d06ad0",
                          cat: "#c080f0", bird: "#a0d040", motion: "#8a8a8a", loss: "#e04040" };
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
    scale.className = "rv-scale";
    for (let h = 0; h < 24; h += 3) {
      const tick = document.createElement("span");
      tick.style.left = `${h / 24 * 100}%`;
      if (h % 6) tick.className = "rv-minor";  // hidden on a phone
      tick.textContent = `${pad(h)}:00`;
      scale.append(tick);
    }
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
      canvas.addEventListener("click", (ev) => play(camera, timeAt(canvas, ev.offsetX)));
      canvas.addEventListener("mousemove", (ev) => {
        canvas.title = `${camera} ${clockText(timeAt(canvas, ev.offsetX))}`;
      });
      state.lanes.set(camera, lane);
    }
    const cams = $("ev-camera"), chosen = cams.value;
    cams.length = 1;
    for (const camera of state.cameras) cams.add(new Option(camera, camera, false, camera === chosen));
  }

  function timeAt(canvas, x) {
    const end = addDays(state.day, 1);
    return Math.round(state.day + Math.max(0, Math.min(1, x / canvas.clientWidth)) * (end - state.day));
  }

  function drawLanes() { state.lanes.forEach(drawLane); }

  function drawLane(lane) {
    if (!lane) return;
    const c = lane.canvas, dpr = window.devicePixelRatio || 1, w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const ctx = c.getContext("2d"), day = state.day, len = addDays(day, 1) - day;
    const x = (ms) => Math.max(0, Math.min(w, (ms - day) / len * w));
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

  // --- controls ----------------------------------------------------------------------------------
  function togglePlay() { if (!state.win) return; if (video.paused) video.play().catch(() => {}); else video.pause(); }
  function setSpeed(v) { $("rv-speed").value = String(v); video.playbackRate = video.defaultPlaybackRate = v; }
  $("rv-play").onclick = togglePlay;
  $("rv-back").onclick = () => state.win && seekTo(state.shownMs - STEP_MS);
  $("rv-fwd").onclick = () => state.win && seekTo(state.shownMs + STEP_MS);
  $("rv-speed").onchange = () => setSpeed(Number($("rv-speed").value));
  $("rv-in").onclick = markIn;
  $("rv-out").onclick = markOut;
  $("rv-prev").onclick = () => setDay(addDays(state.day, -1));
  $("rv-next").onclick = () => setDay(addDays(state.day, 1));
  $("rv-date").onchange = () => {
    const [y, m, d] = $("rv-date").value.split("-").map(Number);
    if (y) setDay(new Date(y, m - 1, d).getTime());
  };
  $("ev-camera").onchange = listEvents;
  $("ev-label").onchange = listEvents;
  document.addEventListener("keydown", (ev) => {
    if ($("review").hidden || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement) return;
    const keys = {
      " ": togglePlay,
      ArrowLeft: () => state.win && seekTo(state.shownMs - STEP_MS),
      ArrowRight: () => state.win && seekTo(state.shownMs + STEP_MS),
      ",": () => stepFrame(-1),
      ".": () => stepFrame(1),
      "[": markIn,
      "]": markOut,
      "+": () => setSpeed(SPEEDS[Math.min(SPEEDS.length - 1, SPEEDS.indexOf(video.playbackRate) + 1)]),
      "-": () => setSpeed(SPEEDS[Math.max(0, SPEEDS.indexOf(video.playbackRate) - 1)]),
    };
    const act = keys[ev.key];
    if (act) { ev.preventDefault(); act(); }
  });
  window.addEventListener("resize", drawLanes);

  // index.html's hooks: the store's cameras (from `fleet`), and the view shown.
  window.reviewCameras = (names) => {
    if (names.join() === state.cameras.join()) return;
    state.cameras = names.slice();
    buildLanes();
    if (!$("review").hidden) loadDay();
  };
  window.reviewShown = (shown) => {
    if (shown && !video.isConnected) $("rv-screen").prepend(video);
    if (shown) { $("rv-date").value = dateValue(state.day); if (state.cameras.length) loadDay(); }
    else video.pause();
  };
  setInterval(() => {  // today's timelines grow while the cameras record
    if (!$("review").hidden && state.day === midnight(Date.now())) loadDay();
  }, 30000);
  window.review = { play, seekTo, mediaToCapture, state };  // for scripts (the benchmark) and a person at the console

  // Opened as /review?camera=CAM&at=TIME: the store read the time and put it on <body>.
  const asked = document.body.dataset;
  $("rv-date").value = dateValue(state.day);
  if (!$("review").hidden) $("rv-screen").prepend(video);
  if (asked.reviewError) say(asked.reviewError, "bad");
  else if (asked.reviewCamera && asked.reviewAt) play(asked.reviewCamera, Date.parse(asked.reviewAt));
})();
