"use strict";
// The Review view's timeline bars as controls (review-day.js opens it and draws the bars): each bar is a slider a
// keyboard can work (a cursor moved by the minute, to the day's first/last recording, from event to event; Enter
// plays from it, as a click does), and every bar shows one shared window of the day, zoomed 24 h → 6 h → 1 h →
// 10 min (ctrl+wheel, pinch, +/- on a bar, the zoom buttons) and panned by dragging or by the cursor's keys.
// For scripts and tests: #rv-window carries data-from and data-to (ISO, the window shown).
window.reviewTimeline = ({ state, play, $, pad, clockText, dateValue, addDays, redraw }) => {
  const MINUTE = 60 * 1000, HOUR = 60 * MINUTE;
  const LEVELS = [null, 6 * HOUR, HOUR, 10 * MINUTE];  // the window's span per zoom level; null: the whole day
  const LEVEL_NAMES = ["24 h", "6 h", "1 h", "10 min"];
  const TICKS = [3 * HOUR, HOUR, 10 * MINUTE, MINUTE];  // the scale's labels; every other one hidden on a phone
  const DRAG_PX = 4;      // a pointer moved further than this pans (and plays nothing)
  const WHEEL_STEP = 60;  // ctrl+wheel: one level per notch of a mouse (~100), not per event of a trackpad (~1-10)
  const PINCH_STEP = 1.5; // two fingers this many times further apart (or closer): one level
  const iso = (ms) => new Date(ms).toISOString();
  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
  state.zoom = 0;       // index into LEVELS
  state.view = null;    // [fromMs, toMs] shown by every bar; null: the whole day
  state.cursor = null;  // the keyboard's moment (ms), drawn on the focused bar; null until a bar is focused

  // --- the window ----------------------------------------------------------------------------------
  function dayRange() { return [state.day, addDays(state.day, 1)]; }
  function view() { return state.view || dayRange(); }
  function timeAt(canvas, x) {
    const [a, b] = view();
    return Math.round(a + clamp(x / canvas.clientWidth, 0, 1) * (b - a));
  }
  // Zoom to `level` with the moment `anchor` at `fraction` of the bar's width (the pointer's place; the middle for
  // the keys and buttons), the window kept inside the day.
  function setZoom(level, anchor, fraction = 0.5) {
    const [d0, d1] = dayRange();
    state.zoom = clamp(level, 0, LEVELS.length - 1);
    const span = LEVELS[state.zoom];
    if (span === null) state.view = null;
    else {
      const from = clamp(Math.round(anchor - fraction * span), d0, d1 - span);
      state.view = [from, from + span];
    }
    redraw();
  }
  function zoomBy(step, anchor, fraction) {
    const [a, b] = view();
    setZoom(state.zoom + step, anchor ?? state.cursor ?? (a + b) / 2, fraction);
  }
  function panTo(from) {
    if (!state.view) return;
    const [d0, d1] = dayRange(), span = state.view[1] - state.view[0];
    from = clamp(Math.round(from), d0, d1 - span);
    state.view = [from, from + span];
  }
  function keepInView(ms) {  // the cursor went past an edge of a zoomed window: the window follows it
    if (!state.view) return;
    const [a, b] = state.view, margin = (b - a) / 10;
    if (ms < a + margin) panTo(ms - margin);
    else if (ms > b - margin) panTo(ms + margin - (b - a));
  }
  function reset() { state.zoom = 0; state.view = null; state.cursor = null; }  // another day shown

  function hm(ms, seconds) {
    if (ms === addDays(state.day, 1)) return "24:00";
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}` + (seconds ? `:${pad(d.getSeconds())}` : "");
  }
  // The scale above the bars and the window's text, for the window shown (review-day.js's drawLanes).
  function drawScale(scale) {
    const [a, b] = view(), step = TICKS[state.zoom];
    scale.textContent = "";
    for (let k = Math.max(0, Math.ceil((a - state.day) / step)); state.day + k * step < b; k++) {
      const at = state.day + k * step, tick = document.createElement("span");
      tick.style.left = `${(at - a) / (b - a) * 100}%`;
      tick.className = (k % 2 ? "rv-minor" : "") + (at === a ? " rv-edge" : "");
      tick.textContent = hm(at);
      scale.append(tick);
    }
    const shown = $("rv-window"), seconds = state.zoom === LEVELS.length - 1;
    shown.textContent = `${hm(a, seconds)}–${hm(b, seconds)} (${LEVEL_NAMES[state.zoom]})`;
    shown.dataset.from = iso(a);
    shown.dataset.to = iso(b);
    $("rv-zoom-in").disabled = state.zoom === LEVELS.length - 1;
    $("rv-zoom-out").disabled = state.zoom === 0;
  }

  // --- the cursor ----------------------------------------------------------------------------------
  function recorded(lane, ms) { return lane.intervals.some(([a, b]) => a / 1000 <= ms && ms < b / 1000); }
  function eventStarts(lane) {
    return state.events.filter((e) => e.camera === lane.camera).map((e) => Math.round(e.start_us / 1000))
      .sort((x, y) => x - y);
  }
  function cursorOf(lane) {  // where the cursor is, or would start: the moment playing, else the first recording
    const [d0, d1] = dayRange();
    let at = state.cursor;
    if (at === null && state.win && state.win.camera === lane.camera) at = state.shownMs;
    if (at === null && lane.intervals.length) at = lane.intervals[0][0] / 1000;
    if (at === null) { const [a, b] = view(); at = (a + b) / 2; }
    return clamp(Math.round(at), d0, d1 - 1);
  }
  function moveCursor(ms) {
    const [d0, d1] = dayRange();
    state.cursor = clamp(Math.round(ms), d0, d1 - 1);
    keepInView(state.cursor);
    redraw();
  }
  // The slider's value for assistive technology: seconds into the day, spoken as the capture time.
  function aria(lane) {
    const [d0, d1] = dayRange(), at = cursorOf(lane), c = lane.canvas;
    c.setAttribute("aria-valuemin", "0");
    c.setAttribute("aria-valuemax", String(Math.round((d1 - d0) / 1000)));
    c.setAttribute("aria-valuenow", String(Math.round((at - d0) / 1000)));
    const events = state.events.filter((e) => e.camera === lane.camera && e.start_us / 1000 <= at &&
                                              at < Math.max(e.end_us / 1000, e.start_us / 1000 + 1000));
    const what = (recorded(lane, at) ? "recorded" : "not recorded") +
      (events.length ? `, event ${events.map((e) => e.label || e.kind).join(", ")}` : "");
    c.setAttribute("aria-valuetext", `${dateValue(at)} ${clockText(at)}, ${what}`);
    c.dataset.cursor = iso(at);
  }

  // --- a bar's keys and pointer --------------------------------------------------------------------
  function attach(lane) {
    const c = lane.canvas;
    c.tabIndex = 0;
    c.setAttribute("role", "slider");
    c.setAttribute("aria-label", `${lane.camera} timeline: ←/→ 1 min (shift 10 min), Home/End first/last ` +
                   "recording, PageUp/PageDown previous/next event, Enter plays, +/- zoom");
    const playHere = (ms) => { state.cursor = ms; play(lane.camera, ms); };

    c.addEventListener("keydown", (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const at = cursorOf(lane), step = (ev.shiftKey ? 10 : 1) * MINUTE;
      const keys = {
        ArrowLeft: () => moveCursor(at - step),
        ArrowRight: () => moveCursor(at + step),
        Home: () => lane.intervals.length && moveCursor(lane.intervals[0][0] / 1000),
        End: () => lane.intervals.length && moveCursor(lane.intervals.at(-1)[1] / 1000 - 1000),  // its last second
        PageUp: () => { const e = eventStarts(lane).filter((s) => s < at).at(-1); if (e !== undefined) moveCursor(e); },
        PageDown: () => { const e = eventStarts(lane).find((s) => s > at); if (e !== undefined) moveCursor(e); },
        Enter: () => playHere(at),
        "+": () => zoomBy(1, at), "=": () => zoomBy(1, at),
        "-": () => zoomBy(-1, at), _: () => zoomBy(-1, at),
      };
      const act = keys[ev.key];
      if (!act) return;  // space, `,` `.` `[` `]` go on to the player (review.js)
      ev.preventDefault();
      ev.stopPropagation();  // ← → + - mean the bar here, not the player's seek and speed
      act();
    });
    c.addEventListener("focus", () => { if (state.cursor === null) state.cursor = cursorOf(lane); redraw(); });
    c.addEventListener("blur", redraw);
    // A mouse click plays and leaves the focus where it was: ← and → then still seek the video, as before.
    c.addEventListener("mousedown", (ev) => ev.preventDefault());

    const pointers = new Map();  // pointerId -> clientX, while down
    let drag = null, pinch = null, swallowClick = false;
    const spread = () => { const [x0, x1] = [...pointers.values()]; return Math.abs(x1 - x0) || 1; };
    c.addEventListener("pointerdown", (ev) => {
      pointers.set(ev.pointerId, ev.clientX);
      c.setPointerCapture(ev.pointerId);
      swallowClick = false;
      if (pointers.size === 2) { pinch = { spread: spread() }; drag = null; }
      else if (pointers.size === 1) drag = { x: ev.clientX, from: view()[0], moved: false };
    });
    c.addEventListener("pointermove", (ev) => {
      if (pointers.has(ev.pointerId)) pointers.set(ev.pointerId, ev.clientX);
      if (pinch && pointers.size === 2) {
        const ratio = spread() / pinch.spread, xs = [...pointers.values()];
        if (ratio > PINCH_STEP || ratio < 1 / PINCH_STEP) {
          const rect = c.getBoundingClientRect(), mid = (xs[0] + xs[1]) / 2 - rect.left;
          zoomBy(ratio > 1 ? 1 : -1, timeAt(c, mid), mid / c.clientWidth);
          pinch.spread = spread();
        }
      } else if (drag && state.view) {
        const dx = ev.clientX - drag.x;
        if (Math.abs(dx) > DRAG_PX) drag.moved = true;
        if (drag.moved) { panTo(drag.from - dx / c.clientWidth * (state.view[1] - state.view[0])); redraw(); }
      }
      if (!pointers.size) c.title = `${lane.camera} ${clockText(timeAt(c, ev.offsetX))}`;
    });
    const up = (ev) => {
      pointers.delete(ev.pointerId);
      if (pinch || (drag && drag.moved)) swallowClick = true;
      if (pointers.size < 2) pinch = null;
      if (!pointers.size) drag = null;
    };
    c.addEventListener("pointerup", up);
    c.addEventListener("pointercancel", up);
    c.addEventListener("click", (ev) => {
      if (swallowClick) { swallowClick = false; return; }  // the end of a drag or a pinch
      playHere(timeAt(c, ev.offsetX));
    });
    let wheel = 0;
    c.addEventListener("wheel", (ev) => {
      if (!ev.ctrlKey) return;  // a plain wheel scrolls the page
      ev.preventDefault();      // ctrl+wheel would zoom the whole page
      wheel += ev.deltaY;
      if (Math.abs(wheel) < WHEEL_STEP) return;
      zoomBy(wheel < 0 ? 1 : -1, timeAt(c, ev.offsetX), ev.offsetX / c.clientWidth);
      wheel = 0;
    }, { passive: false });
  }

  $("rv-zoom-in").onclick = () => zoomBy(1);
  $("rv-zoom-out").onclick = () => zoomBy(-1);
  return { view, attach, aria, drawScale, reset, setZoom };
};
