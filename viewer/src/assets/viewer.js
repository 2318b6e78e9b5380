// cargo contprof viewer: flame graph (canvas), filters, top-functions table and regression table
// over the call tree embedded in the page (see viewer/tree.rs for its shape). No dependencies.
(function () {
  'use strict';
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById('contprof-data').textContent);
  const T = D.tree;
  const N = T.parent.length;
  // The program's prologue (process entry, runtime, harness: every leading frame of a runtime
  // class, down to the user's main, test function or benchmark closure) is folded into one
  // frame unless asked otherwise; so is a worker thread's (its start in std, then a thread
  // pool's scheduler: rayon's main_loop, wait_until, execute, join_context...). Pseudo-frames
  // (`[kernel]`, `[truncated stack]`) are never part of it.
  const PROGRAM = T.fns.name.length;
  T.fns.name.push('[program start]'); T.fns.file.push(''); T.fns.line.push(0); T.fns.class.push(T.fns.class[0]);
  // Library frames between two frames of the user's own code (a parallel iterator's plumbing,
  // std's closures and shims) are folded into one frame unless asked otherwise; frames below
  // which no code of the user's runs (where the time is spent) stay.
  const LIBRARY = T.fns.name.length;
  T.fns.name.push('[library frames]'); T.fns.file.push(''); T.fns.line.push(0); T.fns.class.push(T.fns.class[0]);
  const NF = T.fns.name.length;
  const runtimeFn = new Uint8Array(NF), prologueFn = new Uint8Array(NF), ownFn = new Uint8Array(NF);
  for (let f = 1; f < PROGRAM; f++) {
    const c = T.classes[T.fns.class[f]], pseudo = T.fns.name[f][0] === '[';
    runtimeFn[f] = c.runtime && !pseudo ? 1 : 0;
    prologueFn[f] = (c.prologue || c.runtime) && !pseudo ? 1 : 0;
    ownFn[f] = T.fns.own && T.fns.own[f] ? 1 : 0;
  }
  runtimeFn[LIBRARY] = 1;
  let collapsePrologue = true;
  let collapseLibrary = true;
  // As the terminal table and the verdicts count it: the self cost of std, core, alloc, libc
  // and harness frames goes to their nearest caller in the program's own code.
  let foldRuntime = true;
  const SIDES = T.self.length;
  const DIFF = D.kind === 'compare';
  const HEAD = SIDES - 1;
  const parentOf = Int32Array.from(T.parent);
  const fnOf = Int32Array.from(T.fn);
  const scale = T.profiles.map((n) => (DIFF && n > 0 ? 1 / n : 1));
  const ROW = 18;
  const $ = (id) => document.getElementById(id);
  const canvas = $('flame');
  const ctx = canvas.getContext('2d');
  const tParsed = performance.now();

  // ---- state
  let typeIdx = Math.max(0, T.types.findIndex((t) => t.name === D.default_type));
  let filters = []; // {mode, src, re}
  let focusFn = -1;
  let zoom = 0;
  let zoomPath = [];
  // derived tree after show/hide filters, for the current type
  let dN = 0, dParent, dFn, dSelf, dTotal, cStart, cList, hlTop;
  let rects = { x: [], w: [], d: [], n: [], byDepth: [] };
  let lastDrawMs = 0;
  let highlightedRects = 0;

  // ---- formatting
  function fmt(v, unit) {
    const a = Math.abs(v);
    if (unit === 'nanoseconds') {
      if (a >= 1e9) return (v / 1e9).toFixed(2) + ' s';
      if (a >= 1e6) return (v / 1e6).toFixed(2) + ' ms';
      if (a >= 1e3) return (v / 1e3).toFixed(1) + ' µs';
      return v.toFixed(0) + ' ns';
    }
    if (unit === 'bytes') {
      if (a >= 1 << 30) return (v / (1 << 30)).toFixed(2) + ' GiB';
      if (a >= 1 << 20) return (v / (1 << 20)).toFixed(2) + ' MiB';
      if (a >= 1 << 10) return (v / (1 << 10)).toFixed(1) + ' KiB';
      return v.toFixed(0) + ' B';
    }
    return Math.round(v).toLocaleString('en-US');
  }
  const unit = () => (T.types[typeIdx] ? T.types[typeIdx].unit : '');
  const pct = (v, whole) => (whole > 0 ? ((100 * v) / whole).toFixed(2) + '%' : '–');
  function change(b, h) {
    if (b === 0 && h === 0) return '0%';
    if (b === 0) return 'new';
    const c = (100 * (h - b)) / b;
    return (c >= 0 ? '+' : '') + c.toFixed(1) + '%';
  }
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  function fnLoc(f) {
    const file = T.fns.file[f];
    if (!file) return '';
    return T.fns.line[f] > 0 ? file + ':' + T.fns.line[f] : file;
  }

  // ---- filters → per-function masks
  function masks() {
    const hide = new Uint8Array(NF), show = new Int32Array(NF), hl = new Uint8Array(NF);
    let nShow = 0;
    for (const f of filters) {
      const bit = f.mode === 'show' ? 1 << nShow++ : 0;
      for (let i = 1; i < NF; i++) {
        if (!f.re.test(T.fns.name[i])) continue;
        if (f.mode === 'hide') hide[i] = 1;
        else if (f.mode === 'show') show[i] |= bit;
        else hl[i] = 1;
      }
    }
    if (focusFn > 0) hl[focusFn] = 1;
    return { hide, show, hl, all: (1 << nShow) - 1, hlAny: filters.some((f) => f.mode === 'highlight') || focusFn > 0 };
  }

  // ---- derived tree
  function rebuild() {
    const m = masks();
    const structural = collapsePrologue || collapseLibrary || filters.some((f) => f.mode !== 'highlight');
    dSelf = []; dTotal = [];
    for (let s = 0; s < SIDES; s++) dSelf.push(new Float64Array(N));
    const src = T.self.map((side) => side[typeIdx] || []);
    if (!structural) {
      dN = N; dParent = parentOf; dFn = fnOf;
      for (let s = 0; s < SIDES; s++) { const a = src[s], o = dSelf[s]; for (let i = 0; i < a.length; i++) o[i] = a[i] * scale[s]; }
    } else {
      dParent = new Int32Array(N); dFn = new Int32Array(N);
      const map = new Int32Array(N), bits = new Int32Array(N), index = new Map();
      const prologue = new Uint8Array(N);
      // Whether a frame of the user's own code is above a node, and below it (children have
      // larger indices than their parents).
      const ownAbove = new Uint8Array(N), ownBelow = new Uint8Array(N);
      if (collapseLibrary) {
        for (let i = N - 1; i > 0; i--) if (ownBelow[i] || ownFn[fnOf[i]]) ownBelow[parentOf[i]] = 1;
        for (let i = 1; i < N; i++) ownAbove[i] = ownAbove[parentOf[i]] || ownFn[fnOf[parentOf[i]]] ? 1 : 0;
      }
      dN = 1;
      for (let i = 0; i < N; i++) {
        let d = 0;
        if (i > 0) {
          const p = map[parentOf[i]], f = fnOf[i];
          bits[i] = bits[parentOf[i]] | m.show[f];
          prologue[i] = collapsePrologue && prologueFn[f] && (parentOf[i] === 0 || prologue[parentOf[i]]) ? 1 : 0;
          if (prologue[i]) {
            d = index.get(PROGRAM);
            if (d === undefined) { d = dN++; dParent[d] = 0; dFn[d] = PROGRAM; index.set(PROGRAM, d); }
          } else if (m.hide[f]) d = p;
          else if (collapseLibrary && !ownFn[f] && T.fns.name[f][0] !== '[' && ownAbove[i] && ownBelow[i]) {
            // One `[library frames]` box per run of them under a frame.
            if (dFn[p] === LIBRARY) d = p;
            else {
              const key = p * NF + LIBRARY;
              d = index.get(key);
              if (d === undefined) { d = dN++; dParent[d] = p; dFn[d] = LIBRARY; index.set(key, d); }
            }
          } else {
            const key = p * NF + f;
            d = index.get(key);
            if (d === undefined) { d = dN++; dParent[d] = p; dFn[d] = f; index.set(key, d); }
          }
        }
        map[i] = d;
        if (bits[i] === m.all) for (let s = 0; s < SIDES; s++) dSelf[s][d] += (src[s][i] || 0) * scale[s];
      }
    }
    for (let s = 0; s < SIDES; s++) {
      const t = dSelf[s].slice(0, dN);
      for (let i = dN - 1; i > 0; i--) t[dParent[i]] += t[i];
      dTotal.push(t);
    }
    runScale = DIFF ? medianChange() : 1;
    // children, heaviest first (by head in a comparison)
    const w = dTotal[HEAD];
    const count = new Int32Array(dN + 1);
    for (let i = 1; i < dN; i++) count[dParent[i] + 1]++;
    for (let i = 0; i < dN; i++) count[i + 1] += count[i];
    cStart = count; cList = new Int32Array(Math.max(dN - 1, 0));
    const fill = count.slice(0, dN);
    for (let i = 1; i < dN; i++) cList[fill[dParent[i]]++] = i;
    for (let p = 0; p < dN; p++) {
      if (cStart[p + 1] - cStart[p] > 1) cList.subarray(cStart[p], cStart[p + 1]).sort((a, b) => w[b] - w[a] || dFn[a] - dFn[b]);
    }
    // highlighted: frames matching a highlight filter, counted once under matching ancestors
    hlTop = 0;
    if (m.hlAny) {
      const under = new Uint8Array(dN);
      for (let i = 1; i < dN; i++) {
        const p = dParent[i];
        under[i] = under[p] || (p > 0 && m.hl[dFn[p]]) ? 1 : 0;
        if (m.hl[dFn[i]] && !under[i]) hlTop += w[i];
      }
    }
    rebuild.hl = m.hlAny ? m.hl : null;
    zoom = nodeAt(zoomPath);
  }

  // How the run changed as a whole, the way the verdicts read it: the median (weighted by base
  // cost) of head/base over the frames that have self cost on both sides. A frame is compared
  // with that, so frames that moved with the whole run (a slower machine) stay neutral.
  let runScale = 1;
  function medianChange() {
    const r = [];
    for (let i = 1; i < dN; i++) { const b = dSelf[0][i], h = dSelf[HEAD][i]; if (b > 0 && h > 0) r.push([h / b, b]); }
    if (r.length === 0) return dTotal[0][0] > 0 ? dTotal[HEAD][0] / dTotal[0][0] : 1;
    r.sort((a, b) => a[0] - b[0]);
    const half = r.reduce((s, x) => s + x[1], 0) / 2;
    let acc = 0;
    for (const [ratio, w] of r) { acc += w; if (acc >= half) return ratio; }
    return r[r.length - 1][0];
  }
  // Relative change of head against base, beyond the run's own change.
  function relChange(b, h) { const e = b * runScale; return e > 0 ? h / e - 1 : h > 0 ? 1 : 0; }

  function pathOf(n) { const p = []; for (; n > 0; n = dParent[n]) p.unshift(dFn[n]); return p; }
  function nodeAt(path) {
    let n = 0;
    for (const f of path) {
      let next = -1;
      for (let k = cStart[n]; k < cStart[n + 1]; k++) if (dFn[cList[k]] === f) { next = cList[k]; break; }
      if (next < 0) break;
      n = next;
    }
    return n;
  }
  function setZoom(n) { zoom = n; zoomPath = pathOf(n); draw(); }

  // ---- layout and drawing
  const colors = T.classes.map((c) => c.color);
  // A change that is a small part of the run is faded in proportion: a frame of a few samples
  // that doubles is noise, not news.
  const METRIC_TYPES = {
    cpu: 'cpu', instructions: 'instructions', alloc_bytes: 'alloc_space', alloc_count: 'alloc_objects',
    inuse_bytes: 'inuse_space', delay: 'delay', contentions: 'contentions', wall: 'wall',
  };
  const FADE_BELOW = 0.01;
  // Where a comparison's findings come with the page, full colour is for the functions it found
  // changed (in the metric shown, any verdict): the others moved within what the runs' spread
  // allows, and are drawn light whatever their ratio. std and native frames count as their
  // caller's, as the verdicts count them.
  const UNFOUND_MAX = 0.15;
  const foundByType = D.findings ? new Map() : null;
  for (const f of D.findings || []) {
    const type = METRIC_TYPES[f.metric] || f.metric;
    if (!foundByType.has(type)) foundByType.set(type, new Set());
    foundByType.get(type).add(f.function);
  }
  // Per node of the tree drawn, for the type shown: computed once (parents come before their
  // children), not walked up for every box at every draw.
  let foundNode = null, foundTree = null, foundType = -1;
  function found(n) {
    if (!foundByType) return true;
    if (foundTree !== dParent || foundType !== typeIdx) {
      const t = T.types[typeIdx];
      const names = t && foundByType.get(t.name);
      foundNode = new Uint8Array(dN);
      for (let i = 1; i < dN && names; i++) {
        const f = dFn[i], name = T.fns.name[f];
        foundNode[i] = names.has(name) ? 1 : runtimeFn[f] || name[0] === '[' ? foundNode[dParent[i]] : 0;
      }
      foundTree = dParent;
      foundType = typeIdx;
    }
    return foundNode[n] === 1;
  }
  function diffColor(n) {
    const b = dTotal[0][n], h = dTotal[HEAD][n], whole = Math.max(dTotal[HEAD][0], dTotal[0][0] * runScale);
    const weight = whole > 0 ? Math.min(1, Math.abs(h - b * runScale) / (FADE_BELOW * whole)) : 0;
    const cap = found(n) ? 1 : UNFOUND_MAX;
    const t = Math.max(-cap, Math.min(cap, relChange(b, h))) * weight;
    if (Math.abs(t) < 0.02) return 'hsl(0, 0%, 86%)';
    // Full colour from a 50% change on.
    const light = 88 - 38 * Math.min(1, Math.abs(t) / 0.5);
    return t > 0 ? `hsl(0, 85%, ${light}%)` : `hsl(218, 85%, ${light}%)`;
  }
  function layout(width) {
    const x = [], w = [], d = [], n = [];
    const chain = [];
    for (let k = zoom; ; k = dParent[k]) { chain.unshift(k); if (k === 0) break; }
    chain.forEach((k, depth) => { x.push(0); w.push(width); d.push(depth); n.push(k); });
    const total = dTotal[HEAD][zoom];
    if (total > 0) {
      const px = width / total;
      const visit = (node, x0, depth) => {
        let cx = x0;
        for (let k = cStart[node]; k < cStart[node + 1]; k++) {
          const c = cList[k];
          const cw = dTotal[HEAD][c] * px;
          if (cw < 1) break; // sorted: the rest are narrower still
          x.push(cx); w.push(cw); d.push(depth + 1); n.push(c);
          visit(c, cx, depth + 1);
          cx += cw;
        }
      };
      visit(zoom, 0, chain.length - 1);
    }
    const byDepth = [];
    for (let i = 0; i < n.length; i++) (byDepth[d[i]] = byDepth[d[i]] || []).push(i);
    return { x, w, d, n, byDepth };
  }
  function draw() {
    const start = performance.now();
    const width = Math.max(200, canvas.parentElement.clientWidth);
    rects = layout(width);
    const depths = rects.byDepth.length;
    const dpr = window.devicePixelRatio || 1;
    const height = Math.max(1, depths) * ROW;
    canvas.width = Math.round(width * dpr); canvas.height = Math.round(height * dpr);
    canvas.style.height = height + 'px';
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = '12px ui-monospace, Menlo, Consolas, monospace';
    ctx.textBaseline = 'middle';
    const charW = ctx.measureText('m').width || 7;
    const hl = rebuild.hl;
    highlightedRects = 0;
    for (let i = 0; i < rects.n.length; i++) {
      const node = rects.n[i], f = dFn[node];
      const rx = rects.x[i], rw = rects.w[i], ry = rects.d[i] * ROW;
      const on = !hl || hl[f];
      if (hl && hl[f]) highlightedRects++;
      ctx.globalAlpha = on ? 1 : 0.28;
      ctx.fillStyle = DIFF && node !== 0 ? diffColor(node) : colors[T.fns.class[f]];
      ctx.fillRect(rx, ry, Math.max(rw - 0.5, 0.5), ROW - 1);
      if (hl && hl[f]) { ctx.globalAlpha = 1; ctx.strokeStyle = '#222'; ctx.lineWidth = 1.5; ctx.strokeRect(rx + 0.75, ry + 0.75, rw - 2, ROW - 2.5); }
      if (rw > 3 * charW) {
        const name = node === 0 ? rootLabel() : T.fns.name[f];
        const max = Math.floor((rw - 6) / charW);
        ctx.fillStyle = '#111';
        ctx.fillText(name.length > max ? name.slice(0, Math.max(max - 1, 1)) + '…' : name, rx + 3, ry + ROW / 2);
      }
    }
    ctx.globalAlpha = 1;
    lastDrawMs = performance.now() - start;
    const t = T.types[typeIdx];
    canvas.dataset.type = t ? t.name : '';
    canvas.dataset.zoom = zoom === 0 ? 'all' : T.fns.name[dFn[zoom]];
    canvas.dataset.rects = String(rects.n.length);
    canvas.dataset.highlighted = String(highlightedRects);
    status();
  }
  function rootLabel() { const t = T.types[typeIdx]; return 'all · ' + (t ? t.label + ' ' + fmt(dTotal[HEAD][0], t.unit) : 'no data'); }
  function status() {
    const whole = dTotal[HEAD][0];
    let s = T.types.length === 0 ? 'These profiles have no samples.' : `${T.types[typeIdx].label}: ${fmt(whole, unit())}` + (DIFF ? ` per ${D.per || 'run'} (base ${fmt(dTotal[0][0], unit())})` : '');
    if (zoom !== 0) s += ` · zoomed into ${T.fns.name[dFn[zoom]]} (${pct(dTotal[HEAD][zoom], whole)})`;
    if (rebuild.hl) s += ` · highlighted: ${fmt(hlTop, unit())} (${pct(hlTop, whole)}) in ${highlightedRects} boxes`;
    $('status').textContent = s;
  }
  function hit(ev) {
    const r = canvas.getBoundingClientRect();
    const px = ev.clientX - r.left, depth = Math.floor((ev.clientY - r.top) / ROW);
    for (const i of rects.byDepth[depth] || []) if (px >= rects.x[i] && px < rects.x[i] + rects.w[i]) return rects.n[i];
    return -1;
  }

  // ---- tooltip
  const tip = $('tooltip');
  canvas.addEventListener('mousemove', (ev) => {
    const n = hit(ev);
    if (n < 0) { tip.hidden = true; return; }
    const f = dFn[n], u = unit(), whole = dTotal[HEAD][0];
    let html = `<div class="fn">${esc(n === 0 ? 'all' : T.fns.name[f])}</div>`;
    if (fnLoc(f)) html += `<div class="loc">${esc(fnLoc(f))}</div>`;
    if (DIFF) {
      const bw = dTotal[0][0];
      html += `<div>base: self ${fmt(dSelf[0][n], u)} (${pct(dSelf[0][n], bw)}), total ${fmt(dTotal[0][n], u)} (${pct(dTotal[0][n], bw)})</div>`;
      html += `<div>head: self ${fmt(dSelf[HEAD][n], u)} (${pct(dSelf[HEAD][n], whole)}), total ${fmt(dTotal[HEAD][n], u)} (${pct(dTotal[HEAD][n], whole)})</div>`;
      html += `<div>change: total ${change(dTotal[0][n], dTotal[HEAD][n])}, self ${change(dSelf[0][n], dSelf[HEAD][n])}</div>`;
      if (Math.abs(runScale - 1) > 0.005) html += `<div>beyond the run's own ${change(1, runScale)}: total ${(100 * relChange(dTotal[0][n], dTotal[HEAD][n])).toFixed(1)}%</div>`;
    } else {
      html += `<div>self ${fmt(dSelf[0][n], u)} (${pct(dSelf[0][n], whole)})</div><div>total ${fmt(dTotal[0][n], u)} (${pct(dTotal[0][n], whole)})</div>`;
    }
    tip.innerHTML = html;
    tip.hidden = false;
    tip.style.left = Math.min(ev.clientX + 12, window.innerWidth - tip.offsetWidth - 8) + 'px';
    tip.style.top = ev.clientY + 14 + 'px';
  });
  canvas.addEventListener('mouseleave', () => { tip.hidden = true; });
  canvas.addEventListener('click', (ev) => { const n = hit(ev); if (n >= 0) setZoom(n); });
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape' && zoom !== 0) setZoom(dParent[zoom]); });
  $('reset-zoom').addEventListener('click', () => setZoom(0));
  window.addEventListener('resize', () => draw());

  // ---- top-functions table
  let sortKey = DIFF ? 'dself' : 'self';
  function topRows() {
    const selfH = new Float64Array(NF), selfB = new Float64Array(NF), totH = new Float64Array(NF), totB = new Float64Array(NF);
    const onStack = new Int32Array(NF);
    const owner = new Int32Array(dN);
    for (let i = 1; i < dN; i++) {
      const f = dFn[i], user = f !== PROGRAM && !runtimeFn[f];
      owner[i] = user || !foldRuntime ? i : owner[dParent[i]] > 0 ? owner[dParent[i]] : 0;
    }
    for (let i = 0; i < dN; i++) {
      const o = owner[i] > 0 ? owner[i] : i;
      selfH[dFn[o]] += dSelf[HEAD][i]; selfB[dFn[o]] += dSelf[0][i];
    }
    // iterative DFS: a function's total counts once per path even when it recurses
    const stack = [0], pos = [cStart[0]];
    onStack[dFn[0]]++;
    while (stack.length) {
      const n = stack[stack.length - 1], k = pos[pos.length - 1];
      if (k < cStart[n + 1]) {
        pos[pos.length - 1]++;
        const c = cList[k], f = dFn[c];
        if (onStack[f] === 0) { totH[f] += dTotal[HEAD][c]; if (DIFF) totB[f] += dTotal[0][c]; }
        onStack[f]++; stack.push(c); pos.push(cStart[c]);
      } else { onStack[dFn[n]]--; stack.pop(); pos.pop(); }
    }
    const rows = [];
    // The folded prologue and library frames are not functions of the program.
    for (let f = 1; f < NF; f++) {
      if (f === PROGRAM || f === LIBRARY || (totH[f] === 0 && totB[f] === 0)) continue;
      // Changes beyond the run's own (see medianChange), in the metric's unit per run.
      rows.push({ f, self: selfH[f], baseSelf: selfB[f], total: totH[f], base: totB[f],
        dself: selfH[f] - selfB[f] * runScale, delta: totH[f] - totB[f] * runScale });
    }
    const key = sortKey;
    const byMagnitude = key === 'delta' || key === 'dself';
    rows.sort((a, b) => (key === 'name' ? T.fns.name[a.f].localeCompare(T.fns.name[b.f]) : byMagnitude ? Math.abs(b[key]) - Math.abs(a[key]) : b[key] - a[key]) || a.f - b.f);
    return rows;
  }
  // A change cell: the change beyond the run's own, with base and head in its title.
  function deltaCell(b, h, d) {
    const c = b * runScale > 0 ? relChange(b, h) : null;
    const shown = c === null ? (h > 0 ? 'new' : '–') : (c >= 0 ? '+' : '') + (100 * c).toFixed(1) + '%';
    const cls = Math.abs(d) < 1e-9 ? '' : d > 0 ? 'up' : 'down';
    return `<td class="num ${cls}" title="base ${fmt(b, unit())}, head ${fmt(h, unit())}">${shown}</td>`;
  }
  function renderTop() {
    const cols = DIFF
      ? [['name', 'Function'], ['self', 'Self'], ['dself', 'Δ self'], ['total', 'Total'], ['delta', 'Δ total']]
      : [['name', 'Function'], ['self', 'Self'], ['selfp', 'Self %'], ['total', 'Total'], ['totalp', 'Total %']];
    $('top').tHead.innerHTML = '<tr>' + cols.map(([k, l]) => `<th data-sort="${k}" class="${k === 'name' ? '' : 'num'}${sortKey === k ? ' sorted' : ''}">${l}</th>`).join('') + '</tr>';
    const whole = dTotal[HEAD][0], u = unit();
    const rows = topRows().slice(0, 300);
    $('top').tBodies[0].innerHTML = rows.map((r) => {
      const name = `<td class="fn">${esc(T.fns.name[r.f])}</td>`;
      return `<tr data-fn="${r.f}">` + name + (DIFF
        ? `<td class="num">${fmt(r.self, u)}</td>${deltaCell(r.baseSelf, r.self, r.dself)}<td class="num">${fmt(r.total, u)}</td>${deltaCell(r.base, r.total, r.delta)}`
        : `<td class="num">${fmt(r.self, u)}</td><td class="num">${pct(r.self, whole)}</td><td class="num">${fmt(r.total, u)}</td><td class="num">${pct(r.total, whole)}</td>`) + '</tr>';
    }).join('');
  }
  $('top').tHead.addEventListener('click', (ev) => {
    const th = ev.target.closest('th');
    if (!th) return;
    sortKey = th.dataset.sort.replace(/p$/, '');
    renderTop();
  });
  $('top').tBodies[0].addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr');
    if (tr) focusFunction(Number(tr.dataset.fn));
  });

  // ---- focus: zoom to a function's heaviest box and outline every box of it
  let fnIndex = null;
  function fnByName(name) {
    if (!fnIndex) { fnIndex = new Map(); T.fns.name.forEach((n, i) => fnIndex.set(n, i)); }
    return fnIndex.has(name) ? fnIndex.get(name) : -1;
  }
  function focusFunction(f) {
    focusFn = f;
    rebuild();
    let best = 0;
    for (let i = 1; i < dN; i++) if (dFn[i] === f && dTotal[HEAD][i] + dTotal[0][i] > dTotal[HEAD][best] + dTotal[0][best]) best = i;
    if (best === 0) for (let i = 1; i < dN; i++) if (dFn[i] === f) { best = i; break; }
    zoom = best;
    zoomPath = pathOf(zoom);
    renderFilters();
    draw();
    canvas.scrollIntoView({ block: 'nearest' });
  }

  // ---- filters UI
  function renderFilters() {
    const chips = filters.map((f, i) => `<span class="chip mode-${f.mode}">${f.mode}: ${esc(f.src)}<button type="button" data-remove="${i}" aria-label="remove filter">×</button></span>`);
    if (focusFn > 0) chips.push(`<span class="chip mode-highlight">focus: ${esc(T.fns.name[focusFn])}<button type="button" data-remove="focus" aria-label="remove focus">×</button></span>`);
    $('filter-list').innerHTML = chips.join('');
  }
  $('filter-list').addEventListener('click', (ev) => {
    const b = ev.target.closest('button');
    if (!b) return;
    if (b.dataset.remove === 'focus') focusFn = -1; else filters.splice(Number(b.dataset.remove), 1);
    update();
  });
  function addFilter() {
    const src = $('filter-input').value.trim();
    if (!src) return;
    let re;
    try { re = new RegExp(src); } catch (e) { $('filter-error').textContent = 'invalid regular expression: ' + e.message; return; }
    $('filter-error').textContent = '';
    filters.push({ mode: $('filter-mode').value, src, re });
    $('filter-input').value = '';
    update();
  }
  $('filter-add').addEventListener('click', addFilter);
  $('filter-input').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') addFilter(); });
  function update() { tip.hidden = true; rebuild(); renderFilters(); draw(); renderTop(); if (DIFF) renderLegend(); }

  // ---- type selector
  const sel = $('type');
  sel.innerHTML = T.types.map((t, i) => `<option value="${i}">${esc(t.label)}</option>`).join('');
  sel.value = String(typeIdx);
  sel.addEventListener('change', () => { typeIdx = Number(sel.value); update(); });
  function selectType(name) {
    const i = T.types.findIndex((t) => t.name === name);
    if (i >= 0 && i !== typeIdx) { typeIdx = i; sel.value = String(i); tip.hidden = true; rebuild(); renderTop(); }
  }

  // ---- regression table
  // A finding's metric → the sample type it was read from (compare::Metric::sample_type).
  const METRIC_UNIT = {
    cpu: 'nanoseconds', instructions: 'count', alloc_bytes: 'bytes', alloc_count: 'count', inuse_bytes: 'bytes',
    delay: 'nanoseconds', contentions: 'count', wall: 'nanoseconds',
  };
  if (DIFF) {
    $('regressions').hidden = false;
    const fs = D.findings || [];
    $('no-findings').hidden = fs.length > 0;
    const sign = (v) => (v >= 0 ? '+' : '') + (100 * v).toFixed(1) + '%';
    $('findings').tBodies[0].innerHTML = fs.map((f, i) => {
      const u = METRIC_UNIT[f.metric] || 'count';
      const ch = f.change == null ? 'new' : sign(f.change) + (f.ci_low != null && f.ci_high != null ? ` [${sign(f.ci_low)}, ${sign(f.ci_high)}]` : '');
      return `<tr><td class="v-${f.verdict}">${esc(f.verdict.replace('_', ' '))}</td><td>${esc(f.group)}</td>` +
        `<td class="fn"><a class="focus-link" data-finding="${i}" href="#">${esc(f.function)}</a></td><td>${esc(f.metric)}</td><td>${esc(f.kind)}</td>` +
        `<td class="num">${fmt(f.base, u)}</td><td class="num">${fmt(f.head, u)}</td><td class="num">${ch}</td><td class="num">${f.q == null ? '–' : f.q.toPrecision(2)}</td></tr>`;
    }).join('');
    $('findings').addEventListener('click', (ev) => {
      const a = ev.target.closest('a.focus-link');
      if (!a) return;
      ev.preventDefault();
      const f = fs[Number(a.dataset.finding)];
      selectType(METRIC_TYPES[f.metric] || '');
      const fi = fnByName(f.function);
      if (fi > 0) focusFunction(fi);
      else $('filter-error').textContent = `${f.function} is not in these profiles`;
    });
  }

  // ---- header
  document.title = D.title + ' · cargo contprof';
  $('details').innerHTML = (D.details || []).map((d) => `<li>${esc(d)}</li>`).join('');
  if (D.home) $('home').innerHTML = `<a href="${esc(D.home)}">← ${esc(D.home_label || 'runs')}</a>`;
  const used = new Set();
  for (let f = 1; f < NF; f++) used.add(T.fns.class[f]);
  function renderLegend() {
    $('legend').innerHTML = DIFF
      ? `Colour by change of total beyond the run's own (${change(1, runScale)}, the median change of the frames, as the verdicts normalize): ` +
        '<span class="swatch" style="background:hsl(0,85%,55%)"></span>costs more <span class="swatch" style="background:hsl(218,85%,55%)"></span>costs less <span class="swatch" style="background:hsl(0,0%,86%)"></span>moved with the run (changes under 1% of the run are faded' + (D.findings ? ', those the comparison did not find are light' : '') + ')'
      : [...used].filter((c) => c !== T.fns.class[0]).slice(0, 40).map((c) => `<span class="swatch" style="background:${T.classes[c].color}"></span>${esc(T.classes[c].name)}`).join('');
  }
  renderLegend();
  $('fold-runtime').checked = foldRuntime;
  $('fold-runtime').addEventListener('change', () => { foldRuntime = $('fold-runtime').checked; renderTop(); });
  $('expand-prologue').checked = !collapsePrologue;
  $('expand-prologue').addEventListener('change', () => { collapsePrologue = !$('expand-prologue').checked; update(); });
  $('expand-library').checked = !collapseLibrary;
  $('expand-library').addEventListener('change', () => { collapseLibrary = !$('expand-library').checked; update(); });

  // ---- first view
  rebuild();
  if (DIFF) renderLegend();
  renderFilters();
  draw();
  renderTop();
  const tFirst = performance.now();

  // ---- hook for tests and for users' scripts: read-only state and box geometry
  window.contprof = {
    timings: { parseMs: tParsed - t0, firstViewMs: tFirst - t0, sinceNavigationMs: tFirst, nodes: N },
    lastDrawMs: () => lastDrawMs,
    state: () => ({
      type: T.types[typeIdx] ? T.types[typeIdx].name : '',
      zoom: zoom === 0 ? 'all' : T.fns.name[dFn[zoom]],
      rects: rects.n.length,
      highlighted: highlightedRects,
      highlightedValue: hlTop,
      total: dTotal[HEAD][0],
      derivedNodes: dN,
      filters: filters.map((f) => f.mode + ':' + f.src),
      prologueFolded: collapsePrologue,
      libraryFolded: collapseLibrary,
      runScale,
    }),
    // Every drawn box: its function, colour and the functions on its path from the root.
    boxes: () => rects.n.map((n) => ({
      name: n === 0 ? 'all' : T.fns.name[dFn[n]],
      color: DIFF && n !== 0 ? diffColor(n) : colors[T.fns.class[dFn[n]]],
      path: pathOf(n).map((f) => T.fns.name[f]),
    })),
    // The widest box of a function, in CSS pixels relative to the canvas.
    box: (name) => {
      let best = -1;
      for (let i = 0; i < rects.n.length; i++) {
        const n = rects.n[i];
        if ((n === 0 ? 'all' : T.fns.name[dFn[n]]) === name && (best < 0 || rects.w[i] > rects.w[best])) best = i;
      }
      if (best < 0) return null;
      const n = rects.n[best];
      return { x: rects.x[best], y: rects.d[best] * ROW, w: rects.w[best], h: ROW, color: DIFF && n !== 0 ? diffColor(n) : colors[T.fns.class[dFn[n]]] };
    },
  };
  canvas.dataset.ready = 'true';
})();
