"use strict";
// The Review view of the store's page (index.html): per camera a day's timeline (coverage, gaps, events coloured
// by label), recorded playback through GET /recordings/CAMERA.mp4 with the capture time of the frame shown
// (GET /recordings/CAMERA.json maps media time to capture time through its pieces), the day's events with their
// snapshots (those two in review-day.js), and an export link. Uses index.html's withToken and call.
// For scripts and tests: the <video> carries data-camera and data-start (ISO capture time of the first frame it
// was asked to show); #rv-clock carries data-capture (ISO capture time of the frame on screen).
(() => {
  const WINDOW_MS = 10 * 60 * 1000;  // one /recordings request: from the moment asked for to 10 min later
  const STEP_MS = 10000;             // ← / →
  const SPAN_MS = 60 * 1000;         // the export span until In / Out say otherwise
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
  let playSeq = 0;

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

  // The day's timelines and events (review-day.js).
  const day = window.reviewDay({ state, play, $, pad, iso, clockText, dateValue, addDays });

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
    if (midnight(atMs) !== state.day) day.setDay(midnight(atMs)); else day.drawLanes();
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
      day.drawLane(state.lanes.get(state.win.camera));
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
    day.drawLanes();
  }
  function markIn() { if (state.win) setSpan(state.win.camera, state.shownMs, Math.max(state.span[1], state.shownMs)); }
  function markOut() { if (state.win) setSpan(state.win.camera, state.span[0], state.shownMs); }

  // --- controls ----------------------------------------------------------------------------------
  function togglePlay() { if (!state.win) return; if (video.paused) video.play().catch(() => {}); else video.pause(); }
  function setSpeed(v) { $("rv-speed").value = String(v); video.playbackRate = video.defaultPlaybackRate = v; }
  $("rv-play").onclick = togglePlay;
  $("rv-back").onclick = () => state.win && seekTo(state.shownMs - STEP_MS);
  $("rv-fwd").onclick = () => state.win && seekTo(state.shownMs + STEP_MS);
  $("rv-speed").onchange = () => setSpeed(Number($("rv-speed").value));
  $("rv-in").onclick = markIn;
  $("rv-out").onclick = markOut;
  $("rv-prev").onclick = () => day.setDay(addDays(state.day, -1));
  $("rv-next").onclick = () => day.setDay(addDays(state.day, 1));
  $("rv-date").onchange = () => {
    const [y, m, d] = $("rv-date").value.split("-").map(Number);
    if (y) day.setDay(new Date(y, m - 1, d).getTime());
  };
  $("ev-camera").onchange = () => day.listEvents();
  $("ev-label").onchange = () => day.listEvents();
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
  window.addEventListener("resize", () => day.drawLanes());

  // index.html's hooks: the store's cameras (from `fleet`), and the view shown.
  window.reviewCameras = (names) => {
    if (names.join() === state.cameras.join()) return;
    state.cameras = names.slice();
    day.buildLanes();
    if (!$("review").hidden) day.loadDay();
  };
  window.reviewShown = (shown) => {
    if (shown && !video.isConnected) $("rv-screen").prepend(video);
    if (shown) { $("rv-date").value = dateValue(state.day); if (state.cameras.length) day.loadDay(); }
    else video.pause();
  };
  setInterval(() => {  // today's timelines grow while the cameras record
    if (!$("review").hidden && state.day === midnight(Date.now())) day.loadDay();
  }, 30000);
  window.review = { play, seekTo, mediaToCapture, state };  // for scripts (the benchmark) and a person at the console

  // Opened as /review?camera=CAM&at=TIME: the store read the time and put it on <body>.
  const asked = document.body.dataset;
  $("rv-date").value = dateValue(state.day);
  if (!$("review").hidden) $("rv-screen").prepend(video);
  if (asked.reviewError) say(asked.reviewError, "bad");
  else if (asked.reviewCamera && asked.reviewAt) play(asked.reviewCamera, Date.parse(asked.reviewAt));
})();
