// The Lesson tab: one plain ES module, no build step, nothing fetched but this plugin's own routes.
// TensorBoard loads it in an iframe and calls render(); every number comes from ./run and ./step,
// which read the run's snapshot file (every recorded step, no sampling).

const SVG = 'http://www.w3.org/2000/svg';
const BLUE = '#2563eb';
const RED = '#dc2626';

const state = {run: null, info: null, row: 0, mode: 'free', stop: 0, step: null, selected: null, seq: 0};

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of [].concat(children ?? [])) {
    node.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child);
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(path, params) {
  const response = await fetch(path + (params ? '?' + new URLSearchParams(params) : ''));
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

const fmt = (v, digits = 4) => (v === null || v === undefined ? 'NaN' : Number(v).toFixed(digits));
const signed = (v, digits = 4) => (v === null ? 'NaN' : (v >= 0 ? '+' : '−') + Math.abs(v).toFixed(digits));
const pct = (v) => (v === null ? 'NaN' : (100 * v).toFixed(1) + ' %');
const exact = (v) => (v === null ? 'NaN' : String(Number(v.toPrecision(7))));

const STYLE = `
  body { font-family: Roboto, 'DejaVu Sans', sans-serif; margin: 12px; color: #1e293b; }
  #bar { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; margin-bottom: 8px; }
  #bar button { font-size: 14px; padding: 3px 10px; }
  #bar button.on { background: #1e293b; color: white; }
  #slider { width: 420px; }
  #where { font-weight: bold; }
  #grid { display: grid; grid-template-columns: minmax(560px, 760px) minmax(320px, 1fr); gap: 14px; }
  .panel { border: 1px solid #cbd5e1; border-radius: 6px; padding: 8px 10px; }
  .panel h3 { margin: 0 0 6px; font-size: 14px; }
  table { border-collapse: collapse; font-size: 13px; }
  td, th { padding: 2px 8px; border-bottom: 1px solid #e2e8f0; text-align: right; }
  td:first-child, th:first-child { text-align: left; }
  #weight { font-size: 13px; min-height: 5.5em; }
  #page { font-size: 13px; max-height: 520px; overflow: auto; }
  #message { color: #b45309; }
  line.edge { cursor: pointer; }
  line.edge.picked { stroke-dasharray: 6 3; }
`;

export async function render() {
  document.head.append(el('style', {}, STYLE));
  const runSelect = el('select', {id: 'run'});
  const bar = el('div', {id: 'bar'}, [
    el('label', {}, ['run ', runSelect]),
    el('button', {id: 'mode-story', title: "the seed lesson's 11 steps"}, 'story'),
    el('button', {id: 'mode-free', title: 'every recorded step'}, 'free'),
    el('button', {id: 'prev', title: 'previous (←)'}, '◀'),
    el('input', {id: 'slider', type: 'range', min: '0', max: '0', value: '0'}),
    el('button', {id: 'next', title: 'next (→)'}, '▶'),
    el('span', {id: 'where'}, [
      'step ', el('span', {id: 'step-number'}, '–'), ' · ', el('span', {id: 'row-number'}, '–'),
      ' of ', el('span', {id: 'step-count'}, '–')]),
    el('span', {id: 'story-where'}),
    el('span', {}, ['loss ', el('span', {id: 'loss'}, '–')]),
  ]);
  const grid = el('div', {id: 'grid'}, [
    el('div', {}, [
      el('div', {class: 'panel'}, [el('h3', {}, 'the network at this step'), el('div', {id: 'network'})]),
      el('div', {class: 'panel', id: 'weight'}, 'Hover or click a line for its weight: before, gradient, −lr × gradient, after.'),
      el('div', {class: 'panel'}, [el('h3', {}, 'loss over the run (● this step)'), el('div', {id: 'curve'})]),
      el('div', {class: 'panel', id: 'decision', style: 'display: none'}),
    ]),
    el('div', {}, [
      el('div', {class: 'panel'}, [el('h3', {}, "this step's students"), el('div', {id: 'students'})]),
      el('div', {class: 'panel'}, [el('h3', {id: 'page-title'}, 'the lesson page'), el('div', {id: 'page'})]),
    ]),
  ]);
  document.body.append(bar, el('div', {id: 'message'}), grid);

  const {runs} = await getJSON('./runs');
  if (!runs.length) {
    document.getElementById('message').textContent = 'No run with a snapshots.npz under the logdir yet.';
    return;
  }
  runSelect.append(el('option', {value: ''}, 'choose a run…'), ...runs.map((r) => el('option', {value: r}, r)));
  runSelect.addEventListener('change', () => runSelect.value && openRun(runSelect.value));
  document.getElementById('prev').addEventListener('click', () => move(-1));
  document.getElementById('next').addEventListener('click', () => move(+1));
  document.getElementById('slider').addEventListener('input', (e) => jump(Number(e.target.value)));
  document.getElementById('mode-story').addEventListener('click', () => setMode('story'));
  document.getElementById('mode-free').addEventListener('click', () => setMode('free'));
  document.addEventListener('keydown', (e) => {
    if (e.target && e.target.tagName === 'SELECT') return;
    if (e.key === 'ArrowRight') { e.preventDefault(); move(+1); }
    if (e.key === 'ArrowLeft') { e.preventDefault(); move(-1); }
  });
  runSelect.value = runs[0];  // open the first run at once; the menu picks another
  openRun(runs[0]);
}

async function openRun(run) {
  const message = document.getElementById('message');
  message.textContent = 'loading ' + run + '…';
  try {
    state.info = await getJSON('./run', {run});
  } catch (err) {
    message.textContent = String(err.message);
    return;
  }
  state.run = run;
  message.textContent = state.info.stopped ? 'Training stopped early: ' + state.info.stopped : '';
  if (state.info.kind === 'bridge') message.textContent = state.info.message;
  document.getElementById('step-count').textContent = state.info.steps;
  state.selected = null;
  setMode('free', 0);
}

function setMode(mode, row) {
  if (!state.info) return;
  const info = state.info;
  state.mode = info.kind === 'lesson' ? mode : 'free';
  document.getElementById('mode-story').className = state.mode === 'story' ? 'on' : '';
  document.getElementById('mode-free').className = state.mode === 'free' ? 'on' : '';
  const slider = document.getElementById('slider');
  if (state.mode === 'story') {
    slider.max = String(info.story.length - 1);
    jump(0);
  } else {
    slider.max = String(Math.max(info.steps - 1, 0));
    jump(row ?? state.row ?? 0);
  }
}

function move(delta) {
  if (!state.info) return;
  jump((state.mode === 'story' ? state.stop : state.row) + delta);
}

function jump(position) {
  const info = state.info;
  if (!info || !info.steps) return;
  const last = state.mode === 'story' ? info.story.length - 1 : info.steps - 1;
  position = Math.max(0, Math.min(last, position));
  document.getElementById('slider').value = String(position);
  if (state.mode === 'story') {
    state.stop = position;
    state.row = info.pages[info.story[position]].row;
  } else {
    state.row = position;
  }
  showStep();
}

async function showStep() {
  const info = state.info;
  const row = state.row;
  const seq = ++state.seq;
  let step;
  try {
    step = await getJSON('./step', {run: state.run, step: row});
  } catch (err) {
    document.getElementById('message').textContent = String(err.message);
    return;
  }
  if (seq !== state.seq) return;  // a later step was asked for meanwhile
  state.step = step;
  document.getElementById('step-number').textContent = step.step;
  document.getElementById('row-number').textContent = row + 1;
  const loss = document.getElementById('loss');
  loss.textContent = exact(step.loss);
  loss.dataset.value = String(step.loss);
  document.getElementById('story-where').textContent =
    state.mode === 'story' ? `· page ${state.stop + 1} of ${info.story.length}` : `· epoch ${step.epoch + 1}`;
  if (info.kind === 'bridge') {
    clearLessonPanels();
    drawBlocks(step);
  } else {
    drawNetwork(step);
    drawStudents(step);
    drawPage();
    showWeight(state.selected);
    drawDecisionMap(row);
  }
  drawCurve(row);
}

// ---- the network as SVG: sign -> colour, |w| -> thickness on the run's one scale ----
function drawNetwork(step) {
  const info = state.info;
  const W = 720, H = 400, cols = [90, 360, 630], r = 30;
  const labels = [info.labels.inputs, info.labels.hidden, info.labels.outputs];
  const ys = labels.map((l) => l.map((_, i) => (l.length === 1 ? H / 2 : 70 + i * (H - 130) / (l.length - 1))));
  const root = svg('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: 'network-svg'});
  const layers = [['hidden.weight', 0], ['output.weight', 1]];
  for (const [name, col] of layers) {
    const before = step.params[name].before;
    before.forEach((rowValues, target) => rowValues.forEach((w, source) => {
      const width = 1 + 11 * Math.min(Math.abs(w ?? 0) / info.scale, 1);
      const line = svg('line', {
        x1: cols[col] + r, y1: ys[col][source], x2: cols[col + 1] - r, y2: ys[col + 1][target],
        stroke: (w ?? 0) >= 0 ? BLUE : RED, 'stroke-width': width.toFixed(2), 'stroke-opacity': 0.85,
        class: 'edge', 'data-param': name, 'data-i': target, 'data-j': source,
      });
      line.append(svg('title', {}, `${labels[col][source]}→${labels[col + 1][target]}: ${signed(w)}`));
      line.addEventListener('mouseenter', () => showWeight([name, target, source]));
      line.addEventListener('click', () => { state.selected = [name, target, source]; showWeight(state.selected); });
      root.append(line);
    }));
  }
  const first = (rows) => (rows && rows.length ? rows[0] : []);
  const values = [first(step.inputs).map((v) => signed(v, 2)), first(step.hidden).map((v) => fmt(v, 2)),
    first(step.confidences).map(pct)];
  labels.forEach((names, col) => names.forEach((label, i) => {
    root.append(svg('circle', {cx: cols[col], cy: ys[col][i], r, fill: '#f8fafc', stroke: '#1e293b', 'stroke-width': 2}));
    root.append(svg('text', {x: cols[col], y: ys[col][i] - 5, 'text-anchor': 'middle', 'font-size': 12}, label));
    root.append(svg('text', {x: cols[col], y: ys[col][i] + 11, 'text-anchor': 'middle', 'font-size': 12,
      class: 'node-value'}, values[col][i] ?? ''));
  }));
  const who = step.students.map((s) => s.name).join(' + ');
  root.append(svg('text', {x: W / 2, y: 24, 'text-anchor': 'middle', 'font-size': 14},
    `weights before step ${step.step}; node values for ${step.students.length ? step.students[0].name : '–'}` +
    (step.students.length > 1 ? ` (batch: ${who})` : '')));
  root.append(svg('text', {x: W / 2, y: H - 10, 'text-anchor': 'middle', 'font-size': 12, fill: '#64748b'},
    `blue +, red −; thickest line: |w| ≥ ${fmt(info.scale, 2)} (the largest weight of this run)`));
  document.getElementById('network').replaceChildren(root);
  if (state.selected) {
    const [n, i, j] = state.selected;
    const picked = root.querySelector(`line[data-param="${n}"][data-i="${i}"][data-j="${j}"]`);
    if (picked) picked.classList.add('picked');
  }
}

function showWeight(which) {
  const box = document.getElementById('weight');
  if (!which || !state.step) return;
  const [name, i, j] = which;
  const p = state.step.params[name];
  const info = state.info;
  const layer = name.startsWith('hidden') ? 0 : 1;
  const src = [info.labels.inputs, info.labels.hidden][layer][j];
  const dst = [info.labels.hidden, info.labels.outputs][layer][i];
  const rows = [
    ['before the step', signed(p.before[i][j], 6)],
    ['gradient ∂loss/∂w', signed(p.grad[i][j], 6)],
    [`−lr × gradient (lr ${state.step.lr})`, signed(p.minus_lr_grad[i][j], 6)],
    ['after the step', signed(p.after[i][j], 6)],
  ];
  box.replaceChildren(el('h3', {}, `weight ${src}→${dst} (${name}[${i}][${j}]) at step ${state.step.step}`),
    el('table', {id: 'weight-table'}, rows.map(([k, v]) => el('tr', {}, [el('td', {}, k), el('td', {}, v)]))));
}

// A bridge run has no students, pages or decision map: nothing of a lesson run may stay on screen.
function clearLessonPanels() {
  document.getElementById('students').replaceChildren(el('p', {}, 'Bridge runs train on batches of digits; the layers are on the left.'));
  document.getElementById('page-title').textContent = 'the lesson page';
  document.getElementById('page').replaceChildren(el('p', {}, 'The lesson pages belong to lesson runs; this bridge run has its own pages in the Text dashboard.'));
  document.getElementById('decision').style.display = 'none';
  document.getElementById('weight').textContent = '';
}

function drawStudents(step) {
  const head = el('tr', {}, ['student', 'truth', 'PASS', 'FAIL', 'loss'].map((h) => el('th', {}, h)));
  const rows = step.students.map((s) => el('tr', {}, [el('td', {}, s.name), el('td', {}, s.target),
    el('td', {}, pct(s.pass)), el('td', {}, pct(s.fail)), el('td', {}, fmt(s.loss))]));
  document.getElementById('students').replaceChildren(
    el('table', {id: 'students-table'}, [head, ...rows]),
    el('p', {}, [`this step's loss: `, el('b', {}, exact(step.loss)),
      step.students.length > 1 ? ' (the mean over its students)' : '']));
}

function drawPage() {
  const info = state.info;
  let index;
  if (state.mode === 'story') {
    index = info.story[state.stop];
  } else {
    index = info.pages.findIndex((p, k) => p.row === state.row && k >= 3 && k <= 10);
  }
  const title = document.getElementById('page-title');
  const page = document.getElementById('page');
  if (index === undefined || index < 0) {
    title.textContent = 'the lesson page';
    page.replaceChildren(el('p', {}, 'No lesson page is about this step; the story mode walks the pages.'));
    return;
  }
  title.textContent = info.pages[index].title;
  // Rendered and sanitised on the server by TensorBoard's own markdown_to_safe_html.
  page.innerHTML = info.pages[index].html;
}

function drawCurve(row) {
  const info = state.info;
  const losses = info.loss;
  const W = 700, H = 180, pad = 36;
  const root = svg('svg', {width: W, height: H, id: 'curve-svg'});
  const finite = losses.filter((v) => v !== null);
  if (!finite.length) { document.getElementById('curve').replaceChildren(root); return; }
  const top = Math.max(...finite), n = Math.max(losses.length - 1, 1);
  const x = (i) => pad + (W - 2 * pad) * i / n;
  const y = (v) => H - pad + 10 - (H - pad) * (v ?? top) / (top || 1);
  root.append(svg('polyline', {points: losses.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' '),
    fill: 'none', stroke: '#94a3b8', 'stroke-width': 1}));
  if (info.train_loss) {
    root.append(svg('polyline', {points: info.train_loss.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' '),
      fill: 'none', stroke: '#f97316', 'stroke-width': 2}));
  }
  root.append(svg('line', {x1: x(row), x2: x(row), y1: 10, y2: H - pad + 10, stroke: '#1e293b', 'stroke-dasharray': '3 3'}));
  root.append(svg('circle', {cx: x(row), cy: y(losses[row]), r: 5, fill: '#1e293b', id: 'curve-marker'}));
  root.append(svg('text', {x: pad, y: H - 4, 'font-size': 11, fill: '#64748b'},
    `grey: this step's ${info.kind === 'bridge' ? 'batch' : "students'"} loss` +
    (info.train_loss ? '; orange: all training students after the step' : '') + `; max ${fmt(top, 3)}`));
  document.getElementById('curve').replaceChildren(root);
}

async function drawDecisionMap(row) {
  const box = document.getElementById('decision');
  if (!state.info.decision_map) { box.style.display = 'none'; return; }
  box.style.display = '';
  let answer;
  try { answer = await getJSON('./decision_map', {run: state.run, step: row}); } catch (err) { return; }
  if (!answer.available) return;
  const map = answer.map;
  const grid = map.pass_confidence;
  if (!Array.isArray(grid) || !Array.isArray(grid[0])) return;
  const size = 240, rows = grid.length, cols = grid[0].length;
  const root = svg('svg', {width: size, height: size, id: 'decision-svg'});
  grid.forEach((line, i) => line.forEach((p, j) => {
    const v = Math.round(255 * (p ?? 0.5));  // blue: PASS, red: FAIL
    root.append(svg('rect', {x: j * size / cols, y: (rows - 1 - i) * size / rows, width: size / cols + 0.5,
      height: size / rows + 0.5, fill: `rgb(${255 - v},${Math.round(0.6 * Math.min(v, 255 - v))},${v})`}));
  }));
  const [s0, s1] = [map.studied[0], map.studied[map.studied.length - 1]];
  const [c0, c1] = [map.score[0], map.score[map.score.length - 1]];
  (map.students || []).forEach((f, k) => root.append(svg('circle', {
    cx: size * (f[0] - s0) / (s1 - s0), cy: size * (1 - (f[2] - c0) / (c1 - c0)), r: 4,
    fill: map.labels[k] === 0 ? 'white' : 'black', stroke: '#1e293b'})));
  box.replaceChildren(el('h3', {}, 'decision map after this step: PASS confidence (blue) over hours studied → × previous score ↑; dots: training students (white PASS)'), root);
}

// ---- the bridge: layers as blocks with summary numbers, not thousands of lines ----
function drawBlocks(step) {
  const head = el('tr', {}, ['layer', 'shape', 'what', 'mean', 'std', 'norm', 'min', 'max'].map((h) => el('th', {}, h)));
  const rows = [];
  for (const block of step.blocks) {
    for (const [what, s] of Object.entries(block.summary)) {
      rows.push(el('tr', {}, [el('td', {}, block.name), el('td', {}, block.shape.join('×')), el('td', {}, what),
        ...['mean', 'std', 'norm', 'min', 'max'].map((k) => el('td', {}, fmt(s[k])))]));
    }
  }
  document.getElementById('network').replaceChildren(el('table', {id: 'blocks'}, [head, ...rows]));
  document.getElementById('students').replaceChildren(el('p', {}, `loss of this step's batch: ${exact(step.loss)}`));
  document.getElementById('page').replaceChildren();
}
