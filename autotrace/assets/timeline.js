// inspect-trace timeline: draws the run embedded in #timeline-data on one canvas.
// Record text is only ever drawn with fillText or set as textContent (never as HTML).
(function () {
  "use strict";
  const T0 = performance.now();
  const D = JSON.parse(document.getElementById("timeline-data").textContent);
  const S = D.strings;
  const OUT = ["exit", "error", "timeout", "cancel", "running", "abandoned"];
  const OUT_TEXT = ["exit", "error", "timeout", "cancelled", "running", "abandoned"];
  const OUT_HELP = [
    "finished", "raised", "timed out", "cancelled", "still running when read", "process died first",
  ];
  const GLYPH = ["", "\u2715", "\u25D4", "\u2298", "\u25B6", "\u2020"];
  const RUNNING = 4, ABANDONED = 5;
  const AXIS_H = 30, ROW_H = 20, GUTTER = 290, RIGHT = 70;
  const WORSE = [0, 3, 2, 1, 5, 4]; // aggregate colour: the most telling outcome wins

  // -- columns ----------------------------------------------------------------
  const n = D.shown, B = D.bars, nRows = D.rows.length;
  const start = new Float64Array(n), end = new Float64Array(n);
  const outcome = Uint8Array.from(B.outcome);
  const rowOf = new Int32Array(n), rowFirst = new Int32Array(nRows + 1);
  const maxEnd = new Float64Array(n); // running max of end within a row (for search)
  {
    let k = 0;
    for (let r = 0; r < nRows; r++) {
      rowFirst[r] = k;
      let prev = 0, top = -Infinity;
      for (let j = 0; j < D.row_counts[r]; j++, k++) {
        const s = (j === 0 ? B.start[k] : prev + B.start[k]);
        prev = s;
        start[k] = s / 1e6;
        end[k] = (s + B.dur[k]) / 1e6;
        rowOf[k] = r;
        top = Math.max(top, end[k]);
        maxEnd[k] = top;
      }
    }
    rowFirst[nRows] = k;
  }
  const SPAN = Math.max(D.span_us / 1e6, 1e-3);
  const asOf = D.as_of - D.t0;
  const procOfRow = D.rows.map((r) => r[0]);
  const childOf = new Map(); // bar -> child process index it started
  D.processes.forEach((p, i) => { if (p.spawned_by >= 0) childOf.set(p.spawned_by, i); });
  const stuckOf = new Map();
  for (const [k, t, where] of D.stuck) {
    if (!stuckOf.has(k)) stuckOf.set(k, []);
    stuckOf.get(k).push([t / 1e6, where]);
  }

  // -- state ------------------------------------------------------------------
  const canvas = document.getElementById("canvas");
  const chart = document.getElementById("chart");
  const ctx = canvas.getContext("2d");
  let W = 0, H = 0, dpr = 1;
  let viewStart = 0, viewEnd = SPAN, scrollY = 0;
  let selected = -1, selectedProcess = -1, hovered = -1;
  let matches = null; // Uint8Array per bar when a filter is active
  let colors = {}, patterns = {};
  let drawCount = 0, firstPaint = null, pending = false;

  function readColors() {
    const cs = getComputedStyle(document.documentElement);
    const v = (name) => cs.getPropertyValue(name).trim();
    colors = {
      bg: v("--bg"), fg: v("--fg"), muted: v("--muted"), grid: v("--grid"), lane: v("--lane"),
      sel: v("--sel"), density: v("--density"), asof: v("--asof"), border: v("--border"),
      fill: OUT.map((o) => v("--" + o)), text: OUT.map((o) => v("--" + o + "-text")),
    };
    patterns = {
      running: stripes(colors.fill[RUNNING], "rgba(0,0,0,0.28)"),
      error: stripes(colors.fill[1], "rgba(0,0,0,0.22)", true),
      abandoned: dots(colors.bg, colors.fill[ABANDONED]),
    };
  }
  function stripes(base, line, cross) {
    const c = document.createElement("canvas");
    c.width = c.height = 8;
    const g = c.getContext("2d");
    g.fillStyle = base; g.fillRect(0, 0, 8, 8);
    g.strokeStyle = line; g.lineWidth = 2;
    g.beginPath(); g.moveTo(-2, 10); g.lineTo(10, -2); g.stroke();
    if (cross) { g.beginPath(); g.moveTo(-2, -2); g.lineTo(10, 10); g.stroke(); }
    return ctx.createPattern(c, "repeat");
  }
  function dots(base, dot) {
    const c = document.createElement("canvas");
    c.width = c.height = 6;
    const g = c.getContext("2d");
    g.fillStyle = base; g.fillRect(0, 0, 6, 6);
    g.fillStyle = dot; g.fillRect(2, 2, 2, 2);
    return ctx.createPattern(c, "repeat");
  }

  // -- geometry ---------------------------------------------------------------
  const plotW = () => Math.max(10, W - GUTTER - RIGHT);
  const X = (t) => GUTTER + ((t - viewStart) / (viewEnd - viewStart)) * plotW();
  const TX = (x) => viewStart + ((x - GUTTER) / plotW()) * (viewEnd - viewStart);
  const rowY = (r) => AXIS_H + r * ROW_H - scrollY;
  const maxScroll = () => Math.max(0, nRows * ROW_H - (H - AXIS_H) + ROW_H);

  function firstBar(r, t) { // first bar of row r that may end at or after t
    let lo = rowFirst[r], hi = rowFirst[r + 1];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (maxEnd[mid] < t) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  // -- drawing ----------------------------------------------------------------
  function schedule() {
    if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); }
  }

  function resize() {
    dpr = window.devicePixelRatio || 1;
    W = chart.clientWidth; H = chart.clientHeight;
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
    scrollY = Math.min(scrollY, maxScroll());
    draw();
  }

  function label(k) {
    const o = outcome[k];
    const head = o === 0 ? "" : GLYPH[o] + " " + OUT_TEXT[o] + " \u00b7 ";
    const detail = S[B.detail[k]];
    return head + S[B.action[k]] + (detail ? ": " + detail : "");
  }

  function drawBar(g, x0, x1, y, h, o) {
    const w = Math.max(1, x1 - x0);
    switch (o) {
      case 0: g.fillStyle = colors.fill[0]; g.fillRect(x0, y, w, h); break;
      case 1:
        g.fillStyle = patterns.error; g.fillRect(x0, y, w, h);
        g.fillStyle = colors.fill[1]; g.fillRect(x0, y, Math.min(w, 3), h);
        break;
      case 2: { // timeout: a saw-toothed right edge
        g.fillStyle = colors.fill[2]; g.fillRect(x0, y, Math.max(1, w - 4), h);
        if (w > 6) {
          g.beginPath(); g.moveTo(x0 + w - 4, y);
          for (let i = 0; i < 4; i++) {
            g.lineTo(x0 + w, y + (h * (i + 0.5)) / 4); g.lineTo(x0 + w - 4, y + (h * (i + 1)) / 4);
          }
          g.closePath(); g.fill();
        }
        break;
      }
      case 3: // cancelled: hollow, dotted
        g.fillStyle = colors.bg; g.fillRect(x0, y, w, h);
        g.setLineDash([2, 2]); g.strokeStyle = colors.fill[3]; g.lineWidth = 2;
        g.strokeRect(x0 + 1, y + 1, Math.max(0, w - 2), h - 2); g.setLineDash([]);
        break;
      case RUNNING: // striped, outlined, with an arrow head past the time of reading
        g.fillStyle = patterns.running; g.fillRect(x0, y, w, h);
        g.strokeStyle = colors.fg; g.lineWidth = 1.5; g.strokeRect(x0 + 0.75, y + 0.75, Math.max(0, w - 1.5), h - 1.5);
        g.fillStyle = colors.fg; g.beginPath();
        g.moveTo(x0 + w, y - 1); g.lineTo(x0 + w + 8, y + h / 2); g.lineTo(x0 + w, y + h + 1); g.closePath(); g.fill();
        break;
      case ABANDONED: // dashed outline over dots
        g.fillStyle = patterns.abandoned; g.fillRect(x0, y, w, h);
        g.setLineDash([5, 3]); g.strokeStyle = colors.fill[ABANDONED]; g.lineWidth = 2;
        g.strokeRect(x0 + 1, y + 1, Math.max(0, w - 2), h - 2); g.setLineDash([]);
        break;
    }
  }

  function barText(g, k, x0, x1, y, h) {
    const o = outcome[k];
    const left = Math.max(x0, GUTTER) + 4, right = Math.min(x1, W - 2) - 4;
    if (right - left < 24) return;
    g.save();
    g.beginPath(); g.rect(left, y, right - left, h); g.clip();
    const text = label(k);
    if (o === 1 || o === RUNNING || o === ABANDONED) { // a plain box behind the text, over the pattern
      g.fillStyle = o === 1 ? colors.fill[1] : o === RUNNING ? colors.fill[RUNNING] : colors.bg;
      g.fillRect(left - 2, y + 2, Math.min(right - left + 4, g.measureText(text).width + 4), h - 4);
    }
    g.fillStyle = (o === 3 || o === ABANDONED) ? colors.fg : colors.text[o];
    g.fillText(text, left, y + h / 2 + 0.5);
    g.restore();
  }

  function niceStep(span, px) {
    const raw = (span / Math.max(1, plotW())) * px;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }
  function fmtOffset(t, step) {
    const digits = Math.max(0, Math.min(6, -Math.floor(Math.log10(step))));
    return "+" + t.toFixed(digits) + " s";
  }
  function fmtDuration(s) {
    if (s < 1e-3) return (s * 1e6).toFixed(0) + " \u00b5s";
    if (s < 1) return (s * 1e3).toFixed(1) + " ms";
    if (s < 60) return s.toFixed(s < 10 ? 3 : 2) + " s";
    const m = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (m < 60) return m + "m" + String(sec).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h" + String(m % 60).padStart(2, "0") + "m";
  }
  function clock(t) { return new Date((D.t0 + t) * 1000).toLocaleTimeString([], { hour12: false }); }

  function draw() {
    const g = ctx;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = colors.bg; g.fillRect(0, 0, W, H);
    g.font = "12px system-ui, -apple-system, Segoe UI, Roboto, sans-serif";
    g.textBaseline = "middle";
    const r0 = Math.max(0, Math.floor(scrollY / ROW_H)), r1 = Math.min(nRows, Math.ceil((scrollY + H - AXIS_H) / ROW_H) + 1);
    // grid lines
    const step = niceStep(viewEnd - viewStart, 110);
    g.strokeStyle = colors.grid; g.lineWidth = 1;
    const firstTick = Math.ceil(viewStart / step) * step;
    for (let t = firstTick; t <= viewEnd; t += step) {
      const x = Math.round(X(t)) + 0.5;
      g.beginPath(); g.moveTo(x, AXIS_H); g.lineTo(x, H); g.stroke();
    }
    // rows
    for (let r = r0; r < r1; r++) {
      const y = rowY(r);
      if (D.rows[r][2] === 0) { g.fillStyle = colors.lane; g.fillRect(0, y, W, ROW_H); drawDensity(g, procOfRow[r], y); }
    }
    g.save();
    g.beginPath(); g.rect(GUTTER, AXIS_H, W - GUTTER, H - AXIS_H); g.clip();
    for (let r = r0; r < r1; r++) if (D.rows[r][2] === 1) drawRow(g, r);
    drawLinks(g);
    drawAsOf(g);
    g.restore();
    drawGutter(g, r0, r1);
    drawAxis(g, step, firstTick);
    drawCount++;
    if (firstPaint === null) firstPaint = performance.now();
    updateRange();
  }

  function drawDensity(g, p, y) {
    const values = D.density[p];
    if (!values || !values.length) return;
    let top = 0;
    for (const v of values) if (v > top) top = v;
    if (top <= 0) return;
    const bw = SPAN / values.length;
    const i0 = Math.max(0, Math.floor(viewStart / bw)), i1 = Math.min(values.length, Math.ceil(viewEnd / bw) + 1);
    g.fillStyle = colors.density;
    const h = 8, scale = Math.log1p(top);
    for (let i = i0; i < i1; i++) {
      const v = values[i];
      if (v <= 0) continue;
      const x0 = Math.max(GUTTER, X(i * bw)), x1 = Math.min(W, X((i + 1) * bw));
      const bh = Math.max(1, (Math.log1p(v) / scale) * h);
      g.fillRect(x0, y + ROW_H - 3 - bh, Math.max(1, x1 - x0), bh);
    }
  }

  function drawRow(g, r) {
    const y = rowY(r) + 3, h = ROW_H - 6;
    let runX0 = -1, runX1 = -1, runWorst = -1;
    const flush = () => {
      if (runX0 < 0) return;
      g.fillStyle = colors.fill[runWorst];
      g.fillRect(runX0, y + 2, Math.max(1, runX1 - runX0), h - 4);
      if (runWorst !== 0) { // not colour alone: a tick above what holds a failure or a running action
        g.fillStyle = colors.fg; g.fillRect(runX0, y - 2, Math.max(1, runX1 - runX0), 2);
      }
      runX0 = -1;
    };
    const last = rowFirst[r + 1];
    for (let k = firstBar(r, viewStart); k < last; k++) {
      if (start[k] > viewEnd) break;
      const x0 = X(start[k]), x1 = X(end[k]);
      const faded = matches !== null && !matches[k];
      const narrow = x1 - x0 < 2;
      if (narrow && k !== selected) {
        if (faded) continue;
        // Bars narrower than a pixel merge into columns of at most 2 px, each drawn in
        // the most telling outcome it holds (so one failure stays visible, and local).
        if (runX0 >= 0 && x0 <= runX1 + 1 && runX1 - runX0 < 2) {
          runX1 = Math.max(runX1, x1 + 1);
          if (WORSE[outcome[k]] > WORSE[runWorst]) runWorst = outcome[k];
        } else { flush(); runX0 = x0; runX1 = Math.max(x1, x0 + 1); runWorst = outcome[k]; }
        continue;
      }
      flush();
      if (faded) g.globalAlpha = 0.18;
      drawBar(g, x0, x1, y, h, outcome[k]);
      if (!faded) barText(g, k, x0, x1, y, h);
      g.globalAlpha = 1;
      const reports = stuckOf.get(k);
      if (reports && !faded) {
        g.fillStyle = colors.fg;
        for (const [t] of reports) {
          const x = X(t);
          g.beginPath(); g.moveTo(x - 4, y - 3); g.lineTo(x + 4, y - 3); g.lineTo(x, y + 3); g.closePath(); g.fill();
        }
      }
      if (k === D.culprit) {
        const tx = Math.min(x1, W - RIGHT) + (outcome[k] === RUNNING ? 12 : 4);
        g.font = "bold 12px system-ui, sans-serif"; g.fillStyle = colors.fill[1];
        g.fillText("\u25C0 culprit", tx, y + h / 2);
        g.font = "12px system-ui, -apple-system, Segoe UI, Roboto, sans-serif";
      }
      if (k === selected) {
        g.strokeStyle = colors.sel; g.lineWidth = 3;
        g.strokeRect(x0 - 2.5, y - 2.5, Math.max(1, x1 - x0) + 5, h + 5);
      }
    }
    flush();
  }

  function drawLinks(g) { // a child process's lane hangs from the Subprocess bar that started it
    g.strokeStyle = colors.muted; g.lineWidth = 1; g.setLineDash([3, 3]);
    D.processes.forEach((p) => {
      const k = p.spawned_by;
      if (k < 0) return;
      const x = Math.round(X(start[k])) + 0.5;
      const y0 = rowY(rowOf[k]) + ROW_H - 3, y1 = rowY(p.row) + ROW_H / 2;
      if (Math.max(y0, y1) < AXIS_H || Math.min(y0, y1) > H) return;
      g.beginPath(); g.moveTo(x, y0); g.lineTo(x, y1); g.lineTo(x + 6, y1); g.stroke();
    });
    g.setLineDash([]);
  }

  function drawAsOf(g) {
    const x = Math.round(X(asOf)) + 0.5;
    if (x < GUTTER || x > W) return;
    g.strokeStyle = colors.asof; g.lineWidth = 1.5; g.setLineDash([6, 4]);
    g.beginPath(); g.moveTo(x, AXIS_H); g.lineTo(x, H); g.stroke(); g.setLineDash([]);
  }

  function drawGutter(g, r0, r1) {
    g.fillStyle = colors.bg; g.fillRect(0, AXIS_H, GUTTER, H - AXIS_H);
    g.save(); g.beginPath(); g.rect(0, AXIS_H, GUTTER - 6, H - AXIS_H); g.clip();
    for (let r = r0; r < r1; r++) {
      const y = rowY(r), row = D.rows[r], p = D.processes[row[0]];
      if (row[2] === 0) {
        g.fillStyle = colors.lane; g.fillRect(0, y, GUTTER, ROW_H);
        const indent = 6 + p.depth * 14;
        g.font = "bold 12px system-ui, sans-serif"; g.fillStyle = colors.fg;
        const state = p.state === "running" ? "" : " [" + p.state + "]";
        const text = (p.depth ? "\u21B3 " : "") + "pid " + p.pid + state + "  " + shortCommand(p.argv);
        g.fillText(text, indent, y + ROW_H / 2);
        g.font = "12px system-ui, -apple-system, Segoe UI, Roboto, sans-serif";
        if (row[0] === selectedProcess) { g.strokeStyle = colors.sel; g.lineWidth = 2; g.strokeRect(1, y + 1, GUTTER - 2, ROW_H - 2); }
      } else if (row[1] >= 0) {
        g.fillStyle = colors.muted;
        g.fillText(S[row[1]], 18 + p.depth * 14, y + ROW_H / 2);
      }
    }
    g.restore();
    g.fillStyle = colors.border; g.fillRect(GUTTER - 1, AXIS_H, 1, H - AXIS_H);
  }

  function shortCommand(argv) { // paths without their directories (the whole line is in the details)
    if (!argv.length) return "";
    return argv.map((a) => (/^\/\S+$/.test(a) ? a.split("/").pop() : a)).join(" ");
  }

  function drawAxis(g, step, firstTick) {
    g.fillStyle = colors.bg; g.fillRect(0, 0, W, AXIS_H);
    g.fillStyle = colors.border; g.fillRect(0, AXIS_H - 1, W, 1);
    g.fillStyle = colors.muted; g.textBaseline = "middle";
    g.fillText("started " + clock(0) + " (time since the first action)", 8, AXIS_H / 2);
    g.save(); g.beginPath(); g.rect(GUTTER, 0, W - GUTTER, AXIS_H); g.clip();
    g.fillStyle = colors.fg;
    for (let t = firstTick; t <= viewEnd; t += step) {
      const x = Math.round(X(t));
      g.fillRect(x, AXIS_H - 6, 1, 5);
      g.fillText(fmtOffset(t, step), x + 3, AXIS_H / 2 - 2);
    }
    const xa = X(asOf);
    if (xa >= GUTTER && xa <= W) {
      g.fillStyle = colors.asof; g.font = "bold 12px system-ui, sans-serif";
      const text = "read " + clock(asOf);
      const tw = g.measureText(text).width;
      g.fillStyle = colors.bg; g.fillRect(Math.min(xa + 3, W - tw - 4) - 2, 2, tw + 4, AXIS_H - 10);
      g.fillStyle = colors.asof; g.fillText(text, Math.min(xa + 3, W - tw - 4), AXIS_H / 2 - 2);
    }
    g.restore();
    g.font = "12px system-ui, -apple-system, Segoe UI, Roboto, sans-serif";
  }

  function updateRange() {
    const el = document.getElementById("range");
    const step = niceStep(viewEnd - viewStart, 110) / 10;
    el.textContent = "Showing " + fmtOffset(Math.max(0, viewStart), step) + " \u2192 " +
      fmtOffset(viewEnd, step) + " (" + fmtDuration(viewEnd - viewStart) + " of " + fmtDuration(SPAN) + ")";
  }

  // -- hit testing --------------------------------------------------------------
  function rowAt(y) { const r = Math.floor((y - AXIS_H + scrollY) / ROW_H); return y < AXIS_H || r < 0 || r >= nRows ? -1 : r; }
  function barAt(x, y) {
    const r = rowAt(y);
    if (r < 0 || D.rows[r][2] !== 1 || x < GUTTER) return -1;
    const t = TX(x), tol = (3 / plotW()) * (viewEnd - viewStart);
    let best = -1, bestDur = Infinity;
    const last = rowFirst[r + 1];
    for (let k = firstBar(r, t - tol); k < last && start[k] <= t + tol; k++) {
      if (end[k] + (outcome[k] === RUNNING ? tol * 3 : 0) < t - tol) continue;
      const d = end[k] - start[k];
      if (d < bestDur) { best = k; bestDur = d; }
    }
    return best;
  }

  // -- details ----------------------------------------------------------------
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function threadText(k) {
    const pair = D.thread_pairs[B.thread[k]];
    return [S[pair[0]] || "-", S[pair[1]] || "-"];
  }
  function barButton(k) {
    const b = el("button", S[B.action[k]] + ": " + S[B.detail[k]] + " [" + OUT_TEXT[outcome[k]] + "]", "linklike");
    b.type = "button";
    b.addEventListener("click", () => select(k, true));
    return b;
  }
  function processButton(p) {
    const proc = D.processes[p];
    const b = el("button", "pid " + proc.pid + ": " + proc.argv.join(" "), "linklike");
    b.type = "button";
    b.addEventListener("click", () => selectProcess(p, true));
    return b;
  }
  function dl(pairs) {
    const d = el("dl");
    for (const [k, v] of pairs) {
      d.appendChild(el("dt", k));
      const dd = el("dd");
      if (v instanceof Node) dd.appendChild(v); else dd.textContent = String(v);
      d.appendChild(dd);
    }
    return d;
  }

  function showDetails(k) {
    const box = document.getElementById("details");
    box.replaceChildren();
    if (k < 0) {
      box.appendChild(el("p", n ? "Click a bar for its details, parents and stack." : "No actions in this trace yet."));
      return;
    }
    const o = outcome[k], p = procOfRow[rowOf[k]], proc = D.processes[p];
    const h = el("h2", (GLYPH[o] ? GLYPH[o] + " " : "") + S[B.action[k]]);
    h.appendChild(document.createTextNode(" "));
    h.appendChild(el("span", OUT_TEXT[o], "badge o-" + OUT[o]));
    if (k === D.culprit) h.appendChild(el("span", "culprit", "culprit-tag"));
    box.appendChild(h);
    box.appendChild(el("pre", S[B.detail[k]] || "(no detail)", "detail"));
    const [thread, task] = threadText(k);
    const ended = o === RUNNING ? "still running when read (" + clock(asOf) + ")"
      : o === ABANDONED ? "never: its process died (last write " + clock(end[k]) + ")"
        : clock(end[k]) + " (" + OUT_HELP[o] + ")";
    box.appendChild(dl([
      ["Duration", fmtDuration(end[k] - start[k]) + (o >= RUNNING ? " so far" : "")],
      ["Started", clock(start[k]) + "  (" + fmtOffset(start[k], 1e-3) + ")"],
      ["Ended", ended],
      ["Process", processButton(p)],
      ["Thread", thread],
      ["Task", task],
      ["Trace id", B.trace_id[k]],
    ]));
    // parents, across processes through the Subprocess that started a child
    const chain = [];
    let cur = k, guard = 0;
    while (guard++ < 200) {
      let parent = B.parent[cur];
      if (parent < 0) {
        const pp = D.processes[procOfRow[rowOf[cur]]];
        parent = pp.spawned_by;
      }
      if (parent < 0 || parent === cur) break;
      chain.push(parent); cur = parent;
    }
    box.appendChild(el("h2", "Parent chain"));
    if (chain.length) {
      const ol = el("ol", null, "parents");
      for (const c of chain) { const li = el("li"); li.appendChild(barButton(c)); ol.appendChild(li); }
      box.appendChild(ol);
    } else box.appendChild(el("p", "(top level)"));
    if (childOf.has(k)) {
      box.appendChild(el("h2", "Started process"));
      box.appendChild(processButton(childOf.get(k)));
    }
    const err = D.errors[String(k)];
    if (err) { box.appendChild(el("h2", "Error")); box.appendChild(el("pre", err, "error")); }
    const stack = D.stacks[String(k)];
    const reports = stuckOf.get(k);
    if (stack) {
      box.appendChild(el("h2", "Where it waits"));
      box.appendChild(el("pre", stack.where || "(unknown)", "where"));
      if (reports) box.appendChild(el("p", "Reported stuck " + reports.length + " time(s), last at " + clock(reports[reports.length - 1][0]) + "."));
      box.appendChild(el("h2", "Stack (innermost last)"));
      const ol = el("ol", null, "stack");
      for (const [file, line, fn, code] of stack.frames) {
        const li = el("li");
        li.appendChild(el("code", file + ":" + line + " in " + fn, "frame"));
        if (code) li.appendChild(el("code", code, "frame-code"));
        ol.appendChild(li);
      }
      box.appendChild(ol);
    } else if (o >= RUNNING) {
      box.appendChild(el("p", "No stack yet: the watchdog reports one once the action is stuck (inspect-trace stacks PID asks now)."));
    }
  }

  function showProcess(p) {
    const box = document.getElementById("details");
    box.replaceChildren();
    const proc = D.processes[p];
    box.appendChild(el("h2", "Process " + proc.pid));
    box.appendChild(el("pre", proc.argv.join(" ") || "(no command line)", "argv"));
    const rows = [["State", proc.state], ["Parent pid", proc.parent_pid === null ? "-" : proc.parent_pid],
      ["Actions", proc.actions], ["Trace file", proc.trace_file]];
    if (proc.spawned_by >= 0) rows.push(["Started by", barButton(proc.spawned_by)]);
    box.appendChild(dl(rows));
  }

  function ensureVisible(r) {
    const top = r * ROW_H, visible = H - AXIS_H;
    if (top < scrollY || top + ROW_H > scrollY + visible) scrollY = Math.max(0, Math.min(maxScroll(), top - visible / 3));
  }
  function select(k, reveal) {
    selected = k; selectedProcess = -1;
    if (k >= 0 && reveal) {
      ensureVisible(rowOf[k]);
      let width = viewEnd - viewStart;
      const dur = end[k] - start[k];
      if (((dur / width) * plotW()) < 3) width = Math.max(dur * 5, 1e-5); // too thin to see: zoom in
      if (width !== viewEnd - viewStart || end[k] < viewStart || start[k] > viewEnd) {
        viewStart = start[k] + dur / 2 - width / 2; viewEnd = viewStart + width;
      }
    }
    showDetails(k); schedule();
  }
  function selectProcess(p, reveal) {
    selected = -1; selectedProcess = p;
    if (reveal) ensureVisible(D.processes[p].row);
    showProcess(p); schedule();
  }

  // -- interaction ------------------------------------------------------------
  function zoomAt(x, factor) {
    const t = TX(Math.max(GUTTER, x));
    const minWidth = 1e-6, maxWidth = SPAN * 4;
    const width = Math.min(maxWidth, Math.max(minWidth, (viewEnd - viewStart) * factor));
    const frac = (t - viewStart) / (viewEnd - viewStart);
    viewStart = t - frac * width; viewEnd = viewStart + width;
    schedule();
  }
  function pan(dx) { const dt = (dx / plotW()) * (viewEnd - viewStart); viewStart += dt; viewEnd += dt; schedule(); }
  function scrollBy(dy) { scrollY = Math.max(0, Math.min(maxScroll(), scrollY + dy)); schedule(); }
  function reset() { viewStart = -SPAN * 0.01; viewEnd = SPAN * 1.03 + (SPAN * 0.02); schedule(); }

  chart.addEventListener("wheel", (e) => {
    e.preventDefault();
    hideTip(); // what it described may have moved away from the pointer
    const rect = canvas.getBoundingClientRect();
    if (e.shiftKey) { scrollBy(e.deltaY || e.deltaX); return; }
    if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) { pan(e.deltaX); return; }
    zoomAt(e.clientX - rect.left, Math.exp(e.deltaY * 0.0015));
  }, { passive: false });

  let drag = null;
  chart.addEventListener("mousedown", (e) => {
    if (e.button !== 0) return;
    drag = { x: e.clientX, y: e.clientY, moved: false };
    chart.focus();
  });
  window.addEventListener("mousemove", (e) => {
    const rect = canvas.getBoundingClientRect();
    if (drag) {
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (drag.moved || Math.abs(dx) + Math.abs(dy) > 3) {
        drag.moved = true; chart.classList.add("dragging");
        pan(-dx); scrollBy(-dy);
        drag.x = e.clientX; drag.y = e.clientY;
        hideTip();
        return;
      }
    }
    const x = e.clientX - rect.left, y = e.clientY - rect.top;
    if (x < 0 || y < 0 || x > W || y > H) { if (hovered !== -1) { hovered = -1; hideTip(); } return; }
    const k = barAt(x, y);
    hovered = k;
    if (k >= 0) showTip(k, e.clientX, e.clientY);
    else {
      const r = rowAt(y);
      if (r >= 0 && D.rows[r][2] === 0 && x < GUTTER) showProcessTip(D.rows[r][0], e.clientX, e.clientY);
      else hideTip();
    }
  });
  window.addEventListener("mouseup", (e) => {
    if (!drag) return;
    const moved = drag.moved;
    drag = null; chart.classList.remove("dragging");
    if (moved) return;
    const rect = canvas.getBoundingClientRect();
    const x = e.clientX - rect.left, y = e.clientY - rect.top;
    const k = barAt(x, y);
    if (k >= 0) { select(k, false); return; }
    const r = rowAt(y);
    if (r >= 0 && D.rows[r][2] === 0) selectProcess(D.rows[r][0], false);
  });

  const tip = document.getElementById("tooltip");
  function placeTip(cx, cy) {
    tip.hidden = false;
    const w = tip.offsetWidth, h = tip.offsetHeight;
    tip.style.left = Math.min(cx + 14, window.innerWidth - w - 4) + "px";
    tip.style.top = (cy + 16 + h > window.innerHeight ? cy - h - 8 : cy + 16) + "px";
  }
  function showTip(k, cx, cy) {
    const o = outcome[k], [thread, task] = threadText(k);
    const p = D.processes[procOfRow[rowOf[k]]];
    tip.textContent = [
      S[B.action[k]] + (k === D.culprit ? "  (culprit)" : ""),
      S[B.detail[k]],
      "duration: " + fmtDuration(end[k] - start[k]) + (o >= RUNNING ? " so far" : ""),
      "outcome: " + (GLYPH[o] ? GLYPH[o] + " " : "") + OUT_TEXT[o],
      "pid: " + p.pid + "   thread: " + thread + (task !== "-" ? "   task: " + task : ""),
    ].join("\n");
    placeTip(cx, cy);
  }
  function showProcessTip(p, cx, cy) {
    const proc = D.processes[p];
    tip.textContent = "pid " + proc.pid + " (" + proc.state + ")\n" + proc.argv.join(" ") + "\n" + proc.actions + " actions";
    placeTip(cx, cy);
  }
  function hideTip() { tip.hidden = true; }
  chart.addEventListener("mouseleave", () => { if (!drag) hideTip(); });

  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement) {
      if (e.key === "Escape") { e.target.value = ""; applyFilter(""); chart.focus(); }
      if (e.key === "Enter" && matches) { // the next match after the selected bar
        for (let i = 1; i <= n; i++) {
          const k = (Math.max(selected, -1) + i) % n;
          if (matches[k]) { select(k, true); break; }
        }
      }
      return;
    }
    const mid = GUTTER + plotW() / 2, stepPx = plotW() * 0.15;
    switch (e.key) {
      case "+": case "=": case "w": zoomAt(mid, 0.7); break;
      case "-": case "_": case "s": zoomAt(mid, 1 / 0.7); break;
      case "ArrowLeft": case "a": pan(-stepPx); break;
      case "ArrowRight": case "d": pan(stepPx); break;
      case "ArrowUp": scrollBy(-ROW_H * 3); break;
      case "ArrowDown": scrollBy(ROW_H * 3); break;
      case "PageUp": scrollBy(-(H - AXIS_H) * 0.8); break;
      case "PageDown": scrollBy((H - AXIS_H) * 0.8); break;
      case "0": case "Home": reset(); break;
      case "c": if (D.culprit >= 0) select(D.culprit, true); break;
      case "/": e.preventDefault(); document.getElementById("filter").focus(); return;
      case "Escape": select(-1, false); break;
      default: return;
    }
    e.preventDefault();
  });

  // -- filter -----------------------------------------------------------------
  let lowered = null;
  function applyFilter(q) {
    q = q.trim().toLowerCase();
    const count = document.getElementById("filter-count");
    if (!q) { matches = null; count.textContent = ""; schedule(); return; }
    if (!lowered) lowered = S.map((s) => s.toLowerCase());
    const hit = new Uint8Array(S.length);
    for (let i = 0; i < S.length; i++) if (lowered[i].includes(q)) hit[i] = 1;
    const procHit = D.processes.map((p) => (String(p.pid) === q || p.argv.join(" ").toLowerCase().includes(q)) ? 1 : 0);
    matches = new Uint8Array(n);
    let found = 0;
    for (let k = 0; k < n; k++) {
      if (hit[B.action[k]] || hit[B.detail[k]] || procHit[procOfRow[rowOf[k]]] || B.trace_id[k].toLowerCase().includes(q)) { matches[k] = 1; found++; }
    }
    count.textContent = found.toLocaleString() + " of " + n.toLocaleString() + " match";
    schedule();
  }
  document.getElementById("filter").addEventListener("input", (e) => applyFilter(e.target.value));
  document.getElementById("reset").addEventListener("click", () => { reset(); chart.focus(); });
  document.getElementById("to-culprit").disabled = D.culprit < 0;
  document.getElementById("to-culprit").addEventListener("click", () => { if (D.culprit >= 0) select(D.culprit, true); });

  // -- static parts -------------------------------------------------------------
  function fillHeader() {
    document.getElementById("title").textContent = D.run_id ? "Run " + D.run_id : "Trace";
    let running = 0, failed = 0;
    for (let k = 0; k < n; k++) { if (outcome[k] >= RUNNING) running++; else if (outcome[k] === 1 || outcome[k] === 2) failed++; }
    document.getElementById("summary").textContent = D.processes.length + " process(es) \u00b7 " +
      D.total.toLocaleString() + " actions \u00b7 " + running + " running or abandoned \u00b7 " + failed +
      " failed or timed out \u00b7 read at " + new Date(D.as_of * 1000).toLocaleString([], { hour12: false });
    if (D.shown < D.total) {
      const note = document.getElementById("note");
      note.hidden = false;
      note.textContent = "Showing " + D.shown.toLocaleString() + " of " + D.total.toLocaleString() +
        " actions as bars: every running, failed and stuck one and the longest of the rest, with their parents. " +
        "The band at the top of each process counts all of them. For every bar, write the page of one process " +
        "(inspect-trace timeline FILE) or raise --max-bars.";
    }
    const legend = document.getElementById("legend");
    const items = OUT.map((o, i) => [i, (GLYPH[i] ? GLYPH[i] + " " : "") + OUT_TEXT[i] + " (" + OUT_HELP[i] + ")"]);
    for (const [i, text] of items) {
      const li = el("li"); li.dataset.outcome = OUT[i];
      const c = document.createElement("canvas");
      c.width = 44 * dpr; c.height = 16 * dpr;
      const g = c.getContext("2d"); g.scale(dpr, dpr);
      drawBar(g, 2, i === RUNNING ? 30 : 42, 2, 12, i);
      li.appendChild(c); li.appendChild(el("span", text)); legend.appendChild(li);
    }
    for (const text of ["\u25BC stuck report (watchdog)", "\u25C0 culprit (what anomalies names first)", "band: open actions per time (all)", "dashed line: time of reading"]) {
      legend.appendChild(el("li", text));
    }
    const list = document.getElementById("processes");
    D.processes.forEach((p, i) => {
      const li = el("li"); li.style.marginLeft = p.depth * 12 + "px";
      const b = processButton(i);
      li.appendChild(b);
      li.appendChild(el("span", " \u00b7 " + p.state + " \u00b7 " + p.actions.toLocaleString() + " actions"));
      list.appendChild(li);
    });
  }

  function redrawLegend() { document.getElementById("legend").replaceChildren(); document.getElementById("processes").replaceChildren(); fillHeader(); }

  readColors();
  dpr = window.devicePixelRatio || 1;
  fillHeader();
  reset();
  W = chart.clientWidth; H = chart.clientHeight;
  if (D.culprit >= 0) select(D.culprit, true); else showDetails(-1);
  if (window.ResizeObserver) new ResizeObserver(resize).observe(chart);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => { readColors(); redrawLegend(); schedule(); });
  resize();

  // Read-only view of the state, for tests and benchmarks.
  window.timeline = {
    get view() { return { start: viewStart, end: viewEnd }; },
    get scrollY() { return scrollY; },
    get selected() { return selected; },
    get selectedProcess() { return selectedProcess; },
    get drawCount() { return drawCount; },
    get firstPaintMs() { return firstPaint; },
    setupMs: firstPaint - T0,
    culprit: D.culprit,
    shown: n,
    total: D.total,
    find(text) { for (let k = 0; k < n; k++) if (S[B.detail[k]].includes(text)) return k; return -1; },
    label,
    barCenter(k) { // where bar k is on screen now (page coordinates), or null
      const rect = canvas.getBoundingClientRect();
      const x0 = Math.max(GUTTER, X(start[k])), x1 = Math.min(W - RIGHT, X(end[k]));
      const y = rowY(rowOf[k]) + ROW_H / 2;
      if (x1 < x0 || y < AXIS_H || y > H) return null;
      return { x: rect.left + (x0 + x1) / 2, y: rect.top + y };
    },
    measurePan(frames) { // ms per frame of panning the current view by 2% a frame, drawn at once
      const times = [];
      for (let i = 0; i < frames; i++) {
        const t = performance.now();
        pan(plotW() * 0.02); draw();
        times.push(performance.now() - t);
      }
      times.sort((a, b) => a - b);
      return { mean: times.reduce((a, b) => a + b, 0) / frames, max: times[frames - 1], median: times[frames >> 1] };
    },
    barWidth(k) { return X(end[k]) - X(start[k]); },
    laneCenter(p) {
      const rect = canvas.getBoundingClientRect();
      const y = rowY(D.processes[p].row) + ROW_H / 2;
      return { x: rect.left + GUTTER / 2, y: rect.top + y };
    },
    laneLabels() { return D.processes.map((p) => "pid " + p.pid + "  " + p.argv.join(" ")); },
    ready: true,
  };
})();
