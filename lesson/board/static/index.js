// The Lesson tab: one plain ES module, no build step, nothing fetched but this plugin's own routes.
// TensorBoard loads it in an iframe and calls render(); every number comes from ./run and ./step, which read
// the run's snapshot file (every recorded step, no sampling). What a learner sees is what changed at a step:
// before → after, the lines that moved most, the page's worked weight; a teacher's view (run, step, mode, view,
// compared run) lives in the URL hash, so a reload or a shared link opens the same picture.

import {drawModelView, hideModelView, modelViewHash, wantModelView} from './model_view.js';   // your own model: its health, not lesson panels

const SVG = 'http://www.w3.org/2000/svg';
const BLUE = '#2563eb';
const RED = '#dc2626';
const GLOW = '#facc15';
const VIEWS = {
  forward: 'the forward pass: each line as thick as the value flowing along it (weight × value coming in)',
  before: 'the weights before this step',
  after: 'the weights after this step',
  change: 'how much each weight moved in this step (blue: grew, red: shrank)',
};
const SPEEDS = [1, 2, 5, 10, 30];

const state = {
  runs: [], details: {}, run: null, info: null, row: 0, mode: 'free', stop: 0, view: 'after', viewChosen: false,
  step: null, selected: null, hovered: null, seq: 0, compare: null, compareInfo: null, compareStep: null,
  timer: null, speed: 2, mapSeq: 0, token: '', series: {},   // series: a model run's ratio over every step, asked once
};

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
const signed = (v, digits = 4) => (v === null || v === undefined ? 'NaN' : (v >= 0 ? '+' : '−') + Math.abs(v).toFixed(digits));
const pct = (v) => (v === null || v === undefined ? 'NaN' : (100 * v).toFixed(1) + ' %');
const exact = (v) => (v === null || v === undefined ? 'NaN' : String(Number(v.toPrecision(7))));
const unit = (v, u) => (v === null || v === undefined ? '–' : `${Number(v.toPrecision(4))}${u === '%' ? ' %' : ' ' + u}`);

const STYLE = `
  body { font-family: Roboto, 'DejaVu Sans', sans-serif; margin: 8px 12px; color: #1e293b; font-size: 16px; }
  #bar { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; margin-bottom: 4px; }
  #bar button, #bar select, #bar input { font-size: 16px; }
  #bar button { padding: 2px 7px; }
  #bar button.on { background: #1e293b; color: white; }
  #slider { width: 150px; }
  #run { max-width: 230px; } #compare { max-width: 150px; }
  #where-step, #where-moment { font-weight: bold; }
  #line { margin: 2px 0 6px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  #message { color: #b45309; }
  #grid { display: grid; grid-template-columns: minmax(0, 1.2fr) minmax(0, 1fr); gap: 10px; }
  #left, #right { min-width: 0; display: flex; flex-direction: column; gap: 6px; }
  .panel { border: 1px solid #cbd5e1; border-radius: 6px; padding: 4px 8px; position: relative; min-width: 0; box-sizing: border-box; }
  .panel h3 { margin: 0 0 2px; font-size: 16px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  #networks { display: flex; gap: 8px; }
  #networks > div { flex: 1; min-width: 0; }
  #networks > div:empty { display: none; }
  .net-title { font-weight: bold; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; text-align: center; }
  #networks svg { width: 100%; height: auto; max-height: calc(100vh - 310px); display: block; }
  #legend { color: #475569; }
  #curve svg { width: 100%; height: auto; max-height: 125px; display: block; }
  #decision svg { width: 100%; height: auto; max-height: calc(100vh - 330px); display: block; }
  table { border-collapse: collapse; font-size: 16px; }
  td, th { padding: 1px 8px; border-bottom: 1px solid #e2e8f0; text-align: right; white-space: nowrap; }
  td:first-child, th:first-child { text-align: left; }
  #students { overflow-x: auto; }
  #students-table th { white-space: normal; vertical-align: bottom; }
  #students-table td, #students-table th { padding: 1px 5px; }
  #weight { position: absolute; right: 8px; top: 26px; font-size: 16px; background: rgba(255,255,255,0.95); border: 1px solid #94a3b8;
            border-radius: 6px; padding: 4px 8px; display: none; }
  #weight.shown { display: block; }
  #hint { color: #64748b; }
  #page-panel { margin-top: 0; grid-column: 1 / -1; }
  #page { font-size: 16px; overflow-wrap: anywhere; }
  /* a page's tables wrap their headings and shrink to the panel; the panel scrolls, never the page */
  #page table, #deep table { font-size: 15px; width: 100%; }
  #page th, #deep th { white-space: normal; vertical-align: bottom; overflow-wrap: normal; }
  #page td, #page th, #deep td, #deep th { padding: 1px 4px; }
  #page code, #deep code { white-space: normal; }
  #page-body { overflow-x: auto; }
  /* story: the page beside the network, where the students and the decision map were */
  body.story #left, body.story #right, body.comparing #left, body.comparing #right { display: contents; }
  body.story #grid { grid-template-areas: "net page" "curve page"; grid-template-rows: auto 1fr; align-items: start; }
  body.story #students-panel, body.story #decision { display: none !important; }
  #network-panel { grid-area: net; } #curve-panel { grid-area: curve; } #students-panel { grid-area: side; }
  #decision { grid-area: map; }
  body.story #page-panel, body.comparing #page-panel { grid-area: page; overflow-y: auto; }
  /* vs: the two networks across the whole width, the loss curve and the step's students (or the page) below */
  body.comparing #grid { grid-template-areas: "net net" "curve side"; align-items: start; }
  body.comparing.story #grid { grid-template-areas: "net net" "curve page"; }
  body.comparing #decision { display: none !important; }
  body.comparing:not(.story) #page-panel { display: none; }
  details summary { cursor: pointer; font-weight: bold; margin: 6px 0; }
  line.edge { cursor: pointer; }
  line.edge.picked { stroke-dasharray: 6 3; }
  line.flow { stroke-dasharray: 10 8; animation: flow 1.2s linear infinite; }
  @keyframes flow { to { stroke-dashoffset: -18; } }
  #new-run-form { display: none; gap: 6px; flex-wrap: wrap; align-items: center; margin: 4px 0; padding: 6px;
                  border: 1px dashed #94a3b8; border-radius: 6px; }
  #new-run-form.shown { display: flex; }
  #new-run-form input { width: 5em; font-size: 16px; }
  #new-run-form select { font-size: 16px; }
  /* a phone: one column, nothing wider than the screen */
  @media (max-width: 720px) {
    body { margin: 6px; }
    #grid, body.story #grid, body.comparing #grid, body.comparing.story #grid {
      grid-template-columns: minmax(0, 1fr); grid-template-areas: none; grid-template-rows: none; }
    body.story #left, body.story #right, body.comparing #left, body.comparing #right { display: flex; }
    #networks { flex-direction: column; }
    #networks svg, #decision svg { max-height: none; }
    #page-panel, body.story #page-panel { grid-column: auto; grid-row: auto; max-height: none !important; }
    #line { white-space: normal; }
    #slider { width: 110px; }
  }
`;

// ---- the URL: #lesson&run=…&step=…&mode=…&view=…&compare=… (TensorBoard's own hash names the tab first) ----
function hashTarget() {
  try { return window.parent && window.parent !== window ? window.parent.location : window.location; } catch (err) { return window.location; }
}

function readHash() {
  const hash = hashTarget().hash.replace(/^#/, '');
  const parts = hash.split('&');
  const params = new URLSearchParams(parts.slice(parts[0].includes('=') ? 0 : 1).join('&'));
  return Object.fromEntries(params.entries());
}

// Only what the user chose goes into the address: the run, the mode, the step (every step) or the page (story),
// a view picked with its button, a compared run. A view the story page chose itself stays out, so a reload
// opens that page on its own view again.
function writeHash() {
  if (!state.run) return;
  const target = hashTarget();
  const head = target.hash.replace(/^#/, '').split('&')[0];
  const params = new URLSearchParams({run: state.run, mode: state.mode});
  if (state.mode === 'story') params.set('page', String(state.stop + 1));
  else params.set('step', String(state.row));
  if (state.viewChosen) params.set('view', state.view);
  if (state.compare) params.set('compare', state.compare);
  if (state.info && state.info.kind === 'model') {       // your own model: the measure, the open block, the folds
    for (const [k, v] of Object.entries(modelViewHash())) params.set(k, v);
  }
  const hash = '#' + (head && !head.includes('=') ? head + '&' : '') + params.toString();
  if (target.hash !== hash) {
    try { target.replace(target.href.split('#')[0] + hash); } catch (err) { /* the hash is a convenience */ }
  }
}

// ---- "+ run"'s token: printed only where TensorBoard was started, opened once as …#lesson&token=…, kept in this
// browser for this server's address, and taken out of the address bar (the part after '#' is never sent) ----
const TOKEN_KEY = 'nn-lesson-new-run-token';

function keepToken() {
  const target = hashTarget();
  const parts = target.hash.replace(/^#/, '').split('&');
  const given = parts.find((p) => p.startsWith('token='));
  let token = given ? decodeURIComponent(given.slice('token='.length)) : '';
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else token = localStorage.getItem(TOKEN_KEY) || '';
  } catch (err) { /* no storage: the token lasts as long as this page */ }
  if (given) {
    const rest = parts.filter((p) => p !== given).join('&');
    try { target.replace(target.href.split('#')[0] + '#' + rest); } catch (err) { /* the address is a convenience */ }
  }
  return token;
}

export async function render() {
  state.token = keepToken();
  document.head.append(el('style', {}, STYLE));
  const runSelect = el('select', {id: 'run', title: 'the run on screen'});
  const compareSelect = el('select', {id: 'compare', title: 'a second run beside it, at the same step'});
  const speed = el('select', {id: 'speed', title: 'steps per second'}, SPEEDS.map((s) => el('option', {value: s}, `${s}/s`)));
  const bar = el('div', {id: 'bar'}, [
    el('label', {}, ['run ', runSelect]),
    el('label', {}, ['vs ', compareSelect]),
    el('button', {id: 'mode-story', title: "the lesson's 11 pages"}, 'story'),
    el('button', {id: 'mode-free', title: 'every recorded step'}, 'every step'),
    el('button', {id: 'prev', title: 'previous (←)'}, '◀'),
    el('input', {id: 'slider', type: 'range', min: '0', max: '0', value: '0', 'aria-label': 'step'}),
    el('button', {id: 'next', title: 'next (→)'}, '▶'),
    el('button', {id: 'play', title: 'play / pause (space)'}, 'play'),
    speed,
    el('span', {id: 'views'}, Object.keys(VIEWS).map((v) => el('button', {id: 'view-' + v, title: VIEWS[v]}, v))),
    el('button', {id: 'new-run', title: 'train a new run with other settings'}, '+ run'),
  ]);
  const form = el('div', {id: 'new-run-form'}, [
    el('label', {}, ['lr ', el('input', {id: 'nr-lr', value: '0.5', inputmode: 'decimal'})]),
    el('label', {}, ['activation ', el('select', {id: 'nr-activation'}, ['sigmoid', 'tanh', 'relu'].map((a) => el('option', {}, a)))]),
    el('label', {}, ['init ', el('select', {id: 'nr-init'}, ['lesson', 'random'].map((a) => el('option', {}, a)))]),
    el('label', {}, ['seed ', el('input', {id: 'nr-seed', value: '0'})]),
    el('label', {}, ['loss ', el('select', {id: 'nr-loss'}, ['ce', 'mse'].map((a) => el('option', {}, a)))]),
    el('label', {}, ['batch ', el('input', {id: 'nr-batch', value: '1'})]),
    el('label', {}, ['epochs ', el('input', {id: 'nr-epochs', value: '60'})]),
    el('button', {id: 'nr-train'}, 'train'),
    el('span', {id: 'nr-status'}),
  ]);
  const grid = el('div', {id: 'grid'}, [
    el('div', {id: 'left'}, [
      el('div', {class: 'panel', id: 'network-panel'}, [
        el('h3', {id: 'network-title'}, 'the network'),
        el('div', {id: 'networks'}, [el('div', {id: 'network'}), el('div', {id: 'network-compare'})]),
        el('div', {id: 'legend'}),
        el('div', {id: 'hint'}, 'Hover or click a line for its numbers: before, gradient, −lr × gradient, after.'),
        el('div', {id: 'weight'}),
      ]),
      el('div', {class: 'panel', id: 'curve-panel'}, [el('div', {id: 'curve'})]),
    ]),
    el('div', {id: 'right'}, [
      el('div', {class: 'panel', id: 'students-panel'}, [el('h3', {id: 'students-title'}, "this step's students"), el('div', {id: 'students'})]),
      el('div', {class: 'panel', id: 'decision'}),
    ]),
  ]);
  const pagePanel = el('div', {class: 'panel', id: 'page-panel'}, [
    el('h3', {id: 'page-title'}, 'the lesson page'), el('div', {id: 'page-body'}, [el('div', {id: 'page'}), el('div', {id: 'deep'})])]);
  // the line above the panels: a step ("step 12 · 13 of 360") or a moment of the story ("before training")
  const where = el('div', {id: 'line'}, [
    el('span', {id: 'where-step'}, [
      'step ', el('span', {id: 'step-number'}, '–'), ' · ', el('span', {id: 'row-number'}, '–'),
      ' of ', el('span', {id: 'step-count'}, '–')]),
    el('span', {id: 'where-moment'}),
    el('span', {id: 'story-where'}), ' · ', el('span', {id: 'loss-label'}, 'loss'), ' ', el('span', {id: 'loss'}, '–'),
    el('span', {id: 'caption-sep'}, ' · '), el('span', {id: 'caption'})]);
  grid.append(pagePanel);
  document.body.append(bar, form, el('div', {id: 'message'}), where, grid);
  document.body.tabIndex = -1;   // the tab takes the keys on load, before any click inside it
  window.addEventListener('resize', fit);

  document.getElementById('prev').addEventListener('click', () => move(-1));
  document.getElementById('next').addEventListener('click', () => move(+1));
  document.getElementById('slider').addEventListener('input', (e) => jump(Number(e.target.value)));
  document.getElementById('mode-story').addEventListener('click', () => setMode('story'));
  document.getElementById('mode-free').addEventListener('click', () => setMode('free', state.row));
  document.getElementById('play').addEventListener('click', togglePlay);
  speed.value = String(state.speed);
  speed.addEventListener('change', () => { state.speed = Number(speed.value); if (state.timer) { togglePlay(); togglePlay(); } });
  for (const v of Object.keys(VIEWS)) {
    document.getElementById('view-' + v).addEventListener('click', () => {
      state.view = v; state.viewChosen = true; redraw(); writeHash();
    });
  }
  document.getElementById('new-run').addEventListener('click', () => form.classList.toggle('shown'));
  document.getElementById('nr-train').addEventListener('click', newRun);
  runSelect.addEventListener('change', () => runSelect.value &&
    openRun(runSelect.value, {row: state.row, mode: state.mode, page: state.stop + 1,
      view: state.viewChosen ? state.view : undefined, atStep: stepOfRow(state.info, state.row)}));
  compareSelect.addEventListener('change', () => openCompare(compareSelect.value || null));
  // Keys: taken before any control sees them (capture), so ←/→ and PageUp/PageDown (a presenter's clicker) move
  // the step even while a menu or the slider has the focus, and never change a menu's value; space plays.
  document.addEventListener('keydown', onKey, true);
  document.addEventListener('keyup', (e) => { if (e.key === ' ' && !typing(e.target)) e.preventDefault(); }, true);
  // TensorBoard's page around this frame has the focus on load: its keys move the step too, while the Lesson
  // tab is the one shown and nobody is typing in one of TensorBoard's own fields.
  try {
    const outer = window.parent;
    if (outer && outer !== window && outer.document) {
      outer.document.addEventListener('keydown', (e) => {
        if (!document.defaultView || !/^#lesson(&|$)/.test(outer.location.hash)) return;
        onKey(e);
      }, true);
    }
  } catch (err) { /* another origin: the keys work once the tab has been clicked */ }
  try { window.focus(); document.body.focus({preventScroll: true}); } catch (err) { /* focus is a convenience */ }

  document.getElementById('message').textContent = 'loading the runs…';
  await listRuns();
  document.getElementById('message').textContent = '';
  if (!state.runs.length) {
    document.getElementById('message').textContent = 'No run with a snapshots.npz under the logdir yet: run nn-lesson, or train one with “+ run”.';
    return;
  }
  const wanted = readHash();
  wantModelView(wanted, writeHash);
  const run = state.runs.includes(wanted.run) ? wanted.run : state.defaultRun;
  runSelect.value = run;
  await openRun(run, {row: Number(wanted.step), mode: wanted.mode, page: Number(wanted.page), view: wanted.view});
  if (wanted.compare && state.runs.includes(wanted.compare)) {
    compareSelect.value = wanted.compare;
    await openCompare(wanted.compare);
  }
}

function typing(target) {
  if (!target) return false;
  const tag = target.tagName;
  return tag === 'TEXTAREA' || target.isContentEditable || (tag === 'INPUT' && target.type !== 'range')
    || (target.getAttribute && target.getAttribute('role') === 'textbox');
}

function onKey(e) {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
  const forward = e.key === 'ArrowRight' || e.key === 'PageDown';
  const back = e.key === 'ArrowLeft' || e.key === 'PageUp';
  if (forward || back) {
    e.preventDefault();
    e.stopPropagation();
    move(forward ? +1 : -1);
  } else if (e.key === ' ') {
    e.preventDefault();
    e.stopPropagation();
    togglePlay();
  }
}

async function listRuns() {
  const answer = await getJSON('./runs');
  state.runs = answer.runs;
  state.defaultRun = answer.default;
  state.details = Object.fromEntries((answer.details || []).map((d) => [d.run, d]));
  const label = (r) => (state.details[r] && state.details[r].kind !== 'lesson' ? `${r} (${state.details[r].kind})` : r);
  const runSelect = document.getElementById('run');
  const keep = runSelect.value;
  runSelect.replaceChildren(...state.runs.map((r) => el('option', {value: r, title: label(r)}, label(r))));
  if (keep) runSelect.value = keep;
  runSelect.title = runSelect.value ? `the run on screen: ${runSelect.value}` : 'the run on screen';
  compareChoices();
}

// vs offers the other runs of the run on screen's kind: lesson runs beside a lesson run, your own model's runs beside
// one (a bridge run has nothing to compare with), never the run itself.
function compareChoices() {
  const kind = state.info ? state.info.kind : 'lesson';
  const compareSelect = document.getElementById('compare');
  const keepCompare = compareSelect.value;
  const same = (r) => r !== state.run && (state.details[r] ? state.details[r].kind : 'lesson') === kind && kind !== 'bridge';
  compareSelect.replaceChildren(el('option', {value: ''}, 'nothing'),
    ...state.runs.filter(same).map((r) => el('option', {value: r}, r)));
  compareSelect.value = state.runs.filter(same).includes(keepCompare) ? keepCompare : '';
}

function stepOfRow(info, row) {
  return info && Array.isArray(info.step) && row >= 0 && row < info.step.length ? info.step[row] : undefined;
}

function rowAtStep(info, step) {
  if (!Number.isInteger(step) || !Array.isArray(info.step) || !info.step.length) return null;
  let row = 0;
  info.step.forEach((s, i) => { if (s <= step) row = i; });
  return row;
}

async function openRun(run, wanted = {}) {
  const message = document.getElementById('message');
  message.textContent = 'loading ' + run + '…';
  let info;
  try {
    info = await getJSON('./run', {run});
  } catch (err) {
    message.textContent = String(err.message);
    return;
  }
  state.run = run;
  state.info = info;
  state.series = {};
  state.selected = null;
  state.hovered = null;
  compareChoices();
  if (state.compare && !document.getElementById('compare').value) { state.compare = null; state.compareInfo = null; }
  message.textContent = info.stopped ? 'Training stopped early: ' + info.stopped : '';
  if (info.kind !== 'lesson') message.textContent = info.message;
  document.getElementById('step-count').textContent = info.steps;
  document.getElementById('views').style.display = info.kind === 'lesson' ? '' : 'none';
  document.getElementById('mode-story').disabled = info.kind !== 'lesson';
  document.getElementById('run').title = `the run on screen: ${run}`;
  if (wanted.view && VIEWS[wanted.view]) { state.view = wanted.view; state.viewChosen = true; }
  else { state.viewChosen = false; }
  // a run switched to opens at the training step on screen (its last kept step at or before it), not the row number:
  // two runs may keep different steps
  const near = rowAtStep(info, wanted.atStep);
  const row = near !== null ? near : Number.isInteger(wanted.row) && wanted.row >= 0 && wanted.row < info.steps ? wanted.row : 0;
  if (wanted.mode === 'story' && info.kind === 'lesson') {
    const stop = Number.isInteger(wanted.page) && wanted.page >= 1 ? wanted.page - 1 : 0;
    setMode('story', stop, state.viewChosen);
  } else {
    setMode('free', row, state.viewChosen);
  }
}

async function openCompare(run) {
  state.compare = run;
  state.compareInfo = null;
  if (run) delete state.series[run];
  if (run) {
    try { state.compareInfo = await getJSON('./run', {run}); } catch (err) {
      document.getElementById('message').textContent = String(err.message);
      state.compare = null;
    }
  }
  showStep();
}

// `keepView`: the view asked for (the address, or the run switched from) holds; otherwise a mode opens on its own
// view (every step: "after"; the story: each page's).
function setMode(mode, position, keepView) {
  const info = state.info;
  if (!info) return;
  const before = state.mode;
  state.mode = info.kind === 'lesson' ? mode : 'free';
  if (state.mode !== before && !keepView) state.viewChosen = false;
  if (!state.viewChosen) state.view = 'after';
  document.body.classList.toggle('story', state.mode === 'story');  // the page takes the students' place
  document.getElementById('mode-story').className = state.mode === 'story' ? 'on' : '';
  document.getElementById('mode-free').className = state.mode === 'free' ? 'on' : '';
  const slider = document.getElementById('slider');
  slider.max = String(Math.max((state.mode === 'story' ? info.story.length : info.steps) - 1, 0));
  state.stop = -1;
  jump(position ?? 0, true);
}

function move(delta) {
  if (!state.info) return;
  jump((state.mode === 'story' ? state.stop : state.row) + delta);
}

// `keepView`: a run or mode just opened with the view it asked for; otherwise a new story page opens on its own
// view (a view picked on the page before holds for that page only).
function jump(position, keepView) {
  const info = state.info;
  if (!info || !info.steps) return;
  const last = state.mode === 'story' ? info.story.length - 1 : info.steps - 1;
  position = Math.max(0, Math.min(last, Number.isFinite(position) ? position : 0));
  document.getElementById('slider').value = String(position);
  if (state.mode === 'story') {
    if (position !== state.stop && !keepView) state.viewChosen = false;
    state.stop = position;
    state.row = info.pages[info.story[position]].row;
  } else {
    state.row = position;
  }
  state.hovered = null;
  showStep();
}

function togglePlay() {
  const button = document.getElementById('play');
  if (state.timer) {
    clearInterval(state.timer);
    state.timer = null;
    button.textContent = 'play';
    return;
  }
  button.textContent = 'pause';
  state.timer = setInterval(() => {
    const last = state.mode === 'story' ? state.info.story.length - 1 : state.info.steps - 1;
    const at = state.mode === 'story' ? state.stop : state.row;
    if (at >= last) { togglePlay(); return; }
    move(+1);
  }, 1000 / state.speed);
}

// The page a step belongs to (story mode: the page on screen; every-step mode: the page about this row).
// The page a step belongs to (story mode: the page on screen; every-step mode: the page about this row).
function currentPage() {
  const info = state.info;
  if (!info || info.kind !== 'lesson') return -1;
  if (state.mode === 'story') return info.story[state.stop];
  return info.pages.findIndex((p, k) => p.row === state.row && k >= 3 && k <= 8);
}

// The view a story page opens on: "meets" the forward pass, "learns" the change, before training the starting
// weights, after training the weights after the last step.
function pageView(page) {
  const moment = page.moment || 'step';
  if (moment === 'start') return 'before';
  if (moment !== 'step') return 'after';
  const number = page.title.slice(0, 2);
  return ['04', '06', '08'].includes(number) ? 'forward' : ['05', '07', '09'].includes(number) ? 'change' : 'after';
}

// What the screen shows beside a story page on its own view: "start" (before any step: the starting weights,
// nobody flowing through them), "heldout" (page 10: the trained network meeting the held-out students), "end"
// (page 11: the trained network) or "step" (the step itself, its students flowing through it).
function currentMoment() {
  const info = state.info;
  if (state.mode !== 'story' || state.viewChosen || !info || info.kind !== 'lesson') return 'step';
  const page = info.pages[info.story[state.stop]];
  const moment = page && page.moment ? page.moment : 'step';
  if (moment === 'heldout' && !info.heldout) return 'end';
  return moment;
}

async function showStep() {
  const info = state.info;
  const row = state.row;
  const seq = ++state.seq;
  let step, other = null;
  const model = info.kind === 'model';
  const peer = state.compare && state.compareInfo && state.compareInfo.kind === info.kind ? state.compareInfo : null;
  // the same step: a lesson run's row; your own model's step number (two runs may keep different rows)
  const peerRow = !peer ? -1 : model ? peer.step.indexOf(info.step[row]) : row < peer.steps ? row : -1;
  // a model run's ratio over every step is the same at every step: asked once for each run opened
  const modelStep = async (run, at, more) => {
    const answer = await getJSON('./model_step', {run, step: at, ...more, ...(state.series[run] ? {series: '0'} : {})});
    if (answer.series) state.series[run] = answer.series; else answer.series = state.series[run];
    return answer;
  };
  try {
    [step, other] = await Promise.all([
      model ? modelStep(state.run, row, peerRow >= 0 ? {with: state.compare} : {}) : getJSON('./step', {run: state.run, step: row}),
      peerRow < 0 ? Promise.resolve(null)
        : model ? modelStep(state.compare, peerRow, {with: state.run}) : getJSON('./step', {run: state.compare, step: peerRow})]);
  } catch (err) {
    document.getElementById('message').textContent = String(err.message);
    return;
  }
  if (seq !== state.seq) return;  // a later step was asked for meanwhile
  state.step = step;
  state.compareStep = other;
  document.body.classList.toggle('comparing', Boolean(other));
  const page = currentPage();
  if (state.mode === 'story' && !state.viewChosen && page >= 0) state.view = pageView(info.pages[page]);
  redraw();
  writeHash();
}

// Everything on screen from state.step: nothing of another step or run may stay.
// Everything on screen from state.step and the moment: nothing of another step or run may stay.
function redraw() {
  const info = state.info, step = state.step;
  if (!info || !step) return;
  for (const v of Object.keys(VIEWS)) document.getElementById('view-' + v).className = state.view === v ? 'on' : '';
  const moment = info.kind === 'lesson' ? currentMoment() : 'step';
  drawWhere(step, moment);
  if (info.kind === 'model') {
    document.getElementById('caption').textContent = '';   // the model view says what it shows in its panels
    captionSeparator();
    drawModelView(step, state.compareStep, {run: state.run, compare: state.compare,
      note: state.compare && !state.compareStep ? `${state.compare} has no recorded step ${step.step}` : null});
    return;
  }
  hideModelView();
  if (info.kind !== 'lesson') {
    clearLessonPanels();
    drawBlocks(step);
  } else {
    document.getElementById('network-title').textContent = networkTitle(step, moment);
    const shared = state.compareStep ? Math.max(viewTop(step), viewTop(state.compareStep)) : undefined;
    const legends = [];
    legends.push(drawNetwork(document.getElementById('network'), info, step, state.compareStep ? state.run : null, shared, moment));
    const second = document.getElementById('network-compare');
    if (state.compareStep) {
      drawNetwork(second, state.compareInfo, state.compareStep, state.compare, shared, moment);
    } else {
      second.replaceChildren(...(state.compare ? [el('p', {}, `${state.compare} has no step ${step.step}.`)] : []));
    }
    drawLegend(legends[0], info, moment);
    drawCaption(step, moment);
    drawStudents(step, moment);
    drawPage();
    showWeight();
    if (state.mode !== 'story' && !state.compareStep) drawDecisionMap(state.row);
  }
  drawCurve(state.row, moment);
  captionSeparator();
  fit();
}

// the '·' before the caption only where there is a caption (a model or bridge run has none: no stray '·' at the end)
function captionSeparator() {
  document.getElementById('caption-sep').style.display = document.getElementById('caption').textContent ? '' : 'none';
}

// The line above the panels: the step, or the story's moment, and its loss (each loss named for what it is).
function drawWhere(step, moment) {
  const info = state.info;
  const last = info.step && info.step.length ? info.step[info.step.length - 1] : step.step;
  document.getElementById('step-number').textContent = step.step;
  document.getElementById('row-number').textContent = state.row + 1;
  document.getElementById('step-count').textContent = info.steps;
  const words = {start: 'before training', heldout: `after training (step ${last})`, end: `after training (step ${last})`};
  document.getElementById('where-step').style.display = moment === 'step' ? '' : 'none';
  document.getElementById('where-moment').textContent = words[moment] || '';
  document.getElementById('story-where').textContent =
    state.mode === 'story' ? ` · page ${state.stop + 1} of ${info.story.length}` : ` · epoch ${step.epoch + 1}`;
  const [label, value] = momentLoss(info, step, state.row, moment);
  document.getElementById('loss-label').textContent = label;
  const loss = document.getElementById('loss');
  loss.textContent = fmt(value);
  loss.dataset.value = String(value);
}

// The loss that belongs to the moment, with its name: the step's students' loss, or before training (and after
// it) the loss on all training students, or on page 10 the loss on the held-out students.
function momentLoss(info, step, row, moment) {
  if (moment === 'start') return ['loss on all training students', info.train_loss_start];
  if (moment === 'heldout') return ['loss on the held-out students', (info.heldout_loss || [])[row]];
  if (moment === 'end') return ['loss on all training students', (info.train_loss || [])[row]];
  return ['loss', step.loss];
}

// Heights follow the window: the story page and the networks end at its bottom edge; the page scrolls inside
// its own panel.
function fit() {
  const page = document.getElementById('page-panel');
  const phone = window.innerWidth <= 720;
  const bottom = window.innerHeight - 6;
  const beside = !phone && (document.body.classList.contains('story') || document.body.classList.contains('comparing'));
  page.style.maxHeight = beside ? Math.max(140, bottom - page.getBoundingClientRect().top) + 'px' : '';
  const svgs = document.querySelectorAll('#networks svg');
  if (phone) { svgs.forEach((n) => { n.style.maxHeight = ''; }); return; }
  const comparing = document.body.classList.contains('comparing');
  const panel = document.getElementById('network-panel');
  if (!svgs.length || !panel) return;
  // what the network panel holds besides the drawings, and what must stay below it (the loss curve)
  const top = svgs[0].getBoundingClientRect().top;
  const below = panel.getBoundingClientRect().bottom - svgs[0].getBoundingClientRect().bottom;
  const curve = comparing ? 0 : document.getElementById('curve-panel').getBoundingClientRect().height + 10;
  const room = bottom - top - below - curve - (comparing ? 150 : 0);
  svgs.forEach((n) => { n.style.maxHeight = Math.max(160, room) + 'px'; });
}

function networkTitle(step, moment) {
  const what = VIEWS[state.view].split(' (')[0].split(':')[0];
  if (moment === 'start') return 'before training: the starting weights';
  if (moment === 'heldout') return `after training: a held-out student, ${state.info.heldout.names[0]}`;
  if (moment === 'end') return `after training: the weights after the last step, ${step.step}`;
  const who = step.students.map((s) => s.name).join(' + ');
  return `step ${step.step} (${who}): ${what}`;
}

// ---- the network as SVG: sign -> colour, thickness on one scale for every run (the Images diagrams' too) ----
// The change and forward views draw against the step's largest value; two runs side by side share one.
function viewTop(step) {
  let top = 0;
  for (const name of ['hidden.weight', 'output.weight']) {
    const p = step.params[name];
    const incoming = name === 'hidden.weight' ? (step.inputs[0] || []) : (step.hidden[0] || []);
    p.before.forEach((row, i) => row.forEach((w, j) => {
      const v = state.view === 'change' ? p.update[i][j] : (w ?? 0) * (incoming[j] ?? 0);
      top = Math.max(top, Math.abs(v ?? 0));
    }));
  }
  return top;
}

// Draws one run's network into `box` and returns what its legend says. `moment`: "start" draws the starting weights
// with nobody flowing through them, "heldout" the trained weights with a held-out student's values, "end" the
// trained weights alone; "step" the step's own weights and its first student.
function drawNetwork(box, info, step, runLabel, sharedTop, moment = 'step') {
  // a phone draws the same network narrower, so that its numbers stay readable at the screen's width
  const narrow = window.innerWidth <= 720;
  const W = narrow ? 570 : 760, H = 372, cols = narrow ? [112, 286, 446] : [118, 376, 620], r = 42;
  const labels = [info.labels.inputs, info.labels.hidden, info.labels.outputs];
  const ys = labels.map((l) => l.map((_, i) => (l.length === 1 ? H / 2 : 46 + i * (H - 92) / (l.length - 1))));
  const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, class: 'network-svg', 'data-step': step.step, 'data-moment': moment,
    'data-run': runLabel || state.run});
  if (!runLabel || runLabel === state.run) root.id = 'network-svg';
  const view = state.view;
  const layers = [['hidden.weight', 0], ['output.weight', 1]];
  const first = (rows) => (rows && rows.length ? rows[0] : []);
  const incoming = [first(step.inputs), first(step.hidden)];
  // The change view draws |Δw| against the step's own largest move; the forward view |w × value coming in|
  // against the step's largest flow; before / after |w| against the fixed scale of every run.
  let scale = info.scale, scaleText = `thickest: |w| ≥ ${fmt(info.scale, 1)}, one scale for all runs`;
  const value = (name, i, j) => {
    const p = step.params[name];
    if (view === 'change') return p.update[i][j];
    if (view === 'after') return p.after[i][j];
    if (view === 'forward') return p.before[i][j] * (incoming[name === 'hidden.weight' ? 0 : 1][j] ?? 0);
    return p.before[i][j];
  };
  if (view === 'change' || view === 'forward') {
    const top = sharedTop ?? viewTop(step);
    scale = top || 1;
    const both = sharedTop !== undefined ? ' of both runs' : '';
    scaleText = view === 'change' ? `thickest: the largest move${both}, ${fmt(top, 4)}` : `thickest: the largest w × input${both}, ${fmt(top, 3)}`;
  }
  // the step's largest moves, where the picture shows the step's result (not before training, nor after it all)
  const moved = new Set(moment === 'step' && (view === 'after' || view === 'change')
    ? (step.moved || []).map(([n, i, j]) => `${n}/${i}/${j}`) : []);
  const page = currentPage();
  const worked = state.mode === 'story' && moment === 'step' && page >= 0 ? info.pages[page].worked : null;
  for (const [name, col] of layers) {
    step.params[name].before.forEach((rowValues, target) => rowValues.forEach((_, source) => {
      const w = value(name, target, source);
      const width = 1.5 + 12 * Math.min(Math.abs(w ?? 0) / scale, 1);
      const ends = {x1: cols[col] + r, y1: ys[col][source], x2: cols[col + 1] - r, y2: ys[col + 1][target]};
      const key = `${name}/${target}/${source}`;
      if (moved.has(key)) {
        root.append(svg('line', {...ends, stroke: GLOW, 'stroke-width': (width + 10).toFixed(2), 'stroke-opacity': 0.9,
          class: 'moved', 'data-param': name, 'data-i': target, 'data-j': source}));
      }
      if (worked && worked[0] === name && worked[1] === target && worked[2] === source) {
        root.append(svg('line', {...ends, stroke: '#111827', 'stroke-width': (width + 6).toFixed(2), 'stroke-dasharray': '4 4',
          class: 'worked', 'data-param': name, 'data-i': target, 'data-j': source}));
      }
      const line = svg('line', {
        ...ends, stroke: (w ?? 0) >= 0 ? BLUE : RED, 'stroke-width': width.toFixed(2), 'stroke-opacity': 0.85,
        class: 'edge' + (view === 'forward' ? ' flow' : ''), 'data-param': name, 'data-i': target, 'data-j': source,
      });
      const p = step.params[name];
      line.append(svg('title', {}, `${labels[col][source]}→${labels[col + 1][target]}: ${signed(p.before[target][source])} → ${signed(p.after[target][source])}`));
      line.addEventListener('mouseenter', () => { state.hovered = [name, target, source]; showWeight(); });
      line.addEventListener('mouseleave', () => { state.hovered = null; showWeight(); });
      line.addEventListener('click', () => { state.selected = [name, target, source]; redraw(); });
      root.append(line);
    }));
  }
  // The values in the circles: the step's first student (or a held-out student); none before or after training.
  let values = [[], [], []];
  if (moment === 'step') {
    const raw = step.students.length ? step.students[0].raw : null;
    const after = step.students.length ? [step.students[0].pass_after, step.students[0].fail_after] : null;
    values = [
      first(step.inputs).map((v, i) => [raw ? unit(raw[i], info.units[i]) : '', signed(v, 2)]),
      first(step.hidden).map((v) => [fmt(v, 2), '']),
      first(step.confidences).map((v, i) => view === 'after' && after !== null ? [pct(after[i]), 'after'] : [pct(v), 'before']),
    ];
  } else if (moment === 'heldout' && info.heldout) {
    const h = info.heldout;
    values = [
      first(h.inputs).map((v, i) => [unit(h.raw[0][i], info.units[i]), signed(v, 2)]),
      first(h.hidden).map((v) => [fmt(v, 2), '']),
      first(h.confidences).map((v) => [pct(v), '']),
    ];
  }
  labels.forEach((names, col) => names.forEach((label, i) => {
    const [big, small] = values[col][i] ?? ['', ''];
    root.append(svg('circle', {cx: cols[col], cy: ys[col][i], r, fill: '#f8fafc', stroke: '#1e293b', 'stroke-width': 2}));
    root.append(svg('text', {x: cols[col], y: ys[col][i] + (big ? -8 : 7), 'text-anchor': 'middle', 'font-size': 19, 'font-weight': 'bold'}, label));
    if (big) root.append(svg('text', {x: cols[col], y: ys[col][i] + 16, 'text-anchor': 'middle', 'font-size': 20, class: 'node-value'}, big));
    if (small && col === 0) root.append(svg('text', {x: cols[col] - r - 6, y: ys[col][i] + 5, 'text-anchor': 'end', 'font-size': 19, fill: '#64748b'}, small));
    if (small && col === 2) root.append(svg('text', {x: cols[col] + r + 6, y: ys[col][i] + 6, 'text-anchor': 'start', 'font-size': 19, fill: '#64748b'}, small));
  }));
  const parts = [root];
  if (runLabel) {
    const [what, loss] = momentLoss(info, step, state.row, moment);
    const text = `${runLabel} · ${what} ${exact(loss)}`;
    parts.unshift(el('div', {class: 'net-title', title: text}, text));
  }
  box.replaceChildren(...parts);
  if (state.selected) {
    const [n, i, j] = state.selected;
    const picked = root.querySelector(`line.edge[data-param="${n}"][data-i="${i}"][data-j="${j}"]`);
    if (picked) picked.classList.add('picked');
  }
  return {scaleText, moved: moved.size > 0, worked};
}

// One legend under the networks, in the page's own text (it wraps, never cut): colours, the scale, the yellow
// lines, the page's worked weight.
function drawLegend(legend, info, moment) {
  const box = document.getElementById('legend');
  const parts = [`blue +, red −; ${legend.scaleText}`];
  if (legend.moved) parts.push('; yellow: moved most');
  const nodes = [parts.join('')];
  if (legend.worked) {
    const [name, i, j] = legend.worked;
    const layer = name.startsWith('hidden') ? 0 : 1;
    const src = [info.labels.inputs, info.labels.hidden][layer][j];
    const dst = [info.labels.hidden, info.labels.outputs][layer][i];
    nodes.push('; ', el('b', {id: 'worked-label'}, `dashed black: ${src}→${dst}, the weight worked on this page`));
  }
  if (moment === 'heldout' && info.heldout) {
    const h = info.heldout;
    const right = h.right.filter(Boolean).length;
    nodes.push(`. Held out of training: ${h.names.join(', ')}; ${right} of ${h.names.length} right.`);
  }
  box.replaceChildren(...nodes);
}

// The weight under the pointer (or the one clicked), always of the step on screen; the hint otherwise.
function showWeight() {
  const box = document.getElementById('weight');
  const hint = document.getElementById('hint');
  const which = state.hovered || state.selected;
  const step = state.step;
  if (!which || !step || !step.params || !step.params[which[0]]) {
    box.className = '';
    box.replaceChildren();
    hint.style.display = '';
    return;
  }
  hint.style.display = 'none';
  const [name, i, j] = which;
  const p = step.params[name];
  const info = state.info;
  const layer = name.startsWith('hidden') ? 0 : 1;
  const src = [info.labels.inputs, info.labels.hidden][layer][j];
  const dst = [info.labels.hidden, info.labels.outputs][layer][i];
  const rows = [
    ['before the step', signed(p.before[i][j], 6)],
    ['gradient ∂loss/∂w', signed(p.grad[i][j], 6)],
    [`−lr × gradient (lr ${step.lr})`, signed(p.minus_lr_grad[i][j], 6)],
    ['after the step', signed(p.after[i][j], 6)],
  ];
  box.className = 'shown';
  box.replaceChildren(el('b', {}, `${src}→${dst} at step ${step.step}`),
    el('table', {id: 'weight-table'}, rows.map(([k, v]) => el('tr', {}, [el('td', {}, k), el('td', {}, v)]))));
}

// One line from the step's own numbers: who, their loss before → after, the weight that moved most.
// One line from the step's own numbers: who, their loss before → after, the weight that moved most; before and
// after training, what the moment is.
function drawCaption(step, moment = 'step') {
  const caption = document.getElementById('caption');
  if (moment === 'start') {
    caption.textContent = 'the starting weights: no step has been taken yet.';
    return;
  }
  if (moment === 'heldout' || moment === 'end') {
    const h = state.info.heldout;
    caption.textContent = moment === 'heldout' && h
      ? `the final test: ${h.names.length} held-out students, kept out of training; ${h.right.filter(Boolean).length} of ${h.names.length} right.`
      : 'the weights after the last step: what the network learned.';
    return;
  }
  const who = step.students.map((s) => s.name).join(' + ') || '–';
  const parts = [`${who}: their loss ${fmt(step.loss)} → ${fmt(step.loss_after)} after this step`];
  if (step.loss !== null && step.loss_after !== null) {
    const [a, b] = [fmt(step.loss), fmt(step.loss_after)];   // compared as shown, so "0.0009 → 0.0009" is unchanged
    parts[0] += Number(b) < Number(a) ? ' (it fell)' : Number(b) > Number(a) ? ' (it rose)' : ' (unchanged at 4 decimals)';
  }
  if (step.moved && step.moved.length) {
    const [name, i, j, d] = step.moved[0];
    const layer = name.startsWith('hidden') ? 0 : 1;
    const info = state.info;
    const src = [info.labels.inputs, info.labels.hidden][layer][j];
    const dst = [info.labels.hidden, info.labels.outputs][layer][i];
    parts.push(`moved most: ${src}→${dst}, ${signed(step.params[name].before[i][j])} → ${signed(step.params[name].after[i][j])} (${signed(d)})`);
  } else if (step.moved) {
    parts.push('no line moved at this step (every weight\'s update was exactly 0)');
  }
  caption.textContent = parts.join('; ') + '.';
}

// A bridge run or your own model has no students, pages or decision map: nothing of a lesson run may stay.
function clearLessonPanels() {
  const bridge = state.info.kind === 'bridge';
  document.getElementById('network-title').textContent = `the layers of ${bridge ? 'the bridge MLP' : 'your model'}, by module path`;
  document.getElementById('network-compare').replaceChildren();
  document.getElementById('legend').replaceChildren();
  document.getElementById('caption').textContent = '';
  document.getElementById('students').replaceChildren(el('p', {}, bridge
    ? 'Bridge runs train on batches of digits; the layers are on the left.'
    : 'Your model trains on your batches; its layers are on the left.'));
  document.getElementById('page-title').textContent = 'the lesson page';
  document.getElementById('page').replaceChildren(el('p', {}, bridge
    ? 'The lesson pages belong to lesson runs; this bridge run has its own pages in the Text dashboard.'
    : 'The lesson pages belong to lesson runs; the Scalars and Histograms dashboards hold this run too.'));
  document.getElementById('deep').replaceChildren();
  document.getElementById('decision').style.display = 'none';
  state.hovered = state.selected = null;
  showWeight();
  document.getElementById('hint').style.display = 'none';  // no lines to hover: the layers are a table
}

function drawStudents(step) {
  const units = state.info.units;
  const head = el('tr', {}, ['student', 'inputs', 'truth', 'PASS before', 'loss before → after'].map((h) => el('th', {}, h)));
  const rows = step.students.map((s) => el('tr', {}, [el('td', {}, s.name),
    el('td', {}, s.raw ? s.raw.map((v, i) => unit(v, units[i])).join(', ') : '–'), el('td', {}, s.target),
    el('td', {}, pct(s.pass)), el('td', {}, `${fmt(s.loss)} → ${fmt(s.loss_after)}`)]));
  document.getElementById('students').replaceChildren(
    el('table', {id: 'students-table'}, [head, ...rows]),
    el('div', {}, [`loss of this step: `, el('b', {}, exact(step.loss)),
      step.students.length > 1 ? ' (the mean over its students)' : '']));
}

function drawPage() {
  const info = state.info;
  const index = currentPage();
  const title = document.getElementById('page-title');
  const page = document.getElementById('page');
  const deep = document.getElementById('deep');
  if (index === undefined || index < 0) {
    title.textContent = 'the lesson page';
    page.replaceChildren(el('p', {}, 'No page is about this step: the line above says what it did. “story” walks the 11 pages.'));
    deep.replaceChildren();
    return;
  }
  const p = info.pages[index];
  title.textContent = p.title;
  // Rendered and sanitised on the server by TensorBoard's own markdown_to_safe_html.
  page.innerHTML = p.html;
  if (p.deep_html) {
    const details = el('details', {id: 'under-the-hood'}, [el('summary', {}, 'Under the hood')]);
    const body = el('div', {});
    body.innerHTML = p.deep_html;
    details.append(body);
    deep.replaceChildren(details);
  } else {
    deep.replaceChildren();
  }
}

// The loss on all training students: the start (before any step) at the left edge, then after each step.
function drawCurve(row, moment = 'step') {
  const info = state.info;
  const losses = info.loss;
  const W = 760, H = 150, pad = 50;
  const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, id: 'curve-svg'});
  const other = state.compareInfo && state.compareInfo.kind === 'lesson' ? state.compareInfo : null;
  const lesson = info.kind === 'lesson';
  const withStart = (i) => (i && i.train_loss ? [i.train_loss_start ?? null, ...i.train_loss] : null);
  const lines = [[lesson ? withStart(info) : [null, ...losses], '#f97316', 3]];  // a lesson: all training students
  if (other) lines.push([withStart(other), '#7c3aed', 2.5]);
  const finite = lines.flatMap(([v]) => v || []).filter((v) => v !== null && Number.isFinite(v));  // what is drawn
  if (!finite.length) { document.getElementById('curve').replaceChildren(root); return; }
  const top = Math.max(...finite), n = Math.max(losses.length, other ? other.steps : 1, 1);
  const x = (i) => pad + (W - pad - 10) * i / n;       // i = 0: before any step; i = r + 1: after row r
  const y = (v) => 8 + (H - 50) * (1 - Math.min(v ?? top, top) / (top || 1));
  for (const [values, colour, width] of lines) {
    if (!values) continue;
    const points = values.map((v, i) => [i, v]).filter(([i, v]) => v !== null || i > 0);
    root.append(svg('polyline', {points: points.map(([i, v]) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' '),
      fill: 'none', stroke: colour, 'stroke-width': width}));
  }
  root.append(svg('line', {x1: pad, x2: pad, y1: 8, y2: H - 42, stroke: '#94a3b8'}));
  root.append(svg('text', {x: pad - 4, y: 22, 'text-anchor': 'end', 'font-size': 19}, fmt(top, 2)));
  root.append(svg('text', {x: pad - 4, y: H - 42, 'text-anchor': 'end', 'font-size': 19}, '0'));
  const at = moment === 'start' ? 0 : row + 1;
  const here = moment === 'start' ? info.train_loss_start : (info.train_loss || losses)[row];
  root.append(svg('line', {x1: x(at), x2: x(at), y1: 8, y2: H - 42, stroke: '#1e293b', 'stroke-dasharray': '3 3'}));
  root.append(svg('circle', {cx: x(at), cy: y(here), r: 6, fill: '#1e293b', id: 'curve-marker', 'data-value': String(here)}));
  const when = moment === 'start' ? 'before training' : `step ${info.step[row]}`;
  const legend = !lesson ? "loss of each step's batch"
    : `loss on all training students (● ${when}: ${fmt(here)})` + (other ? `; purple: ${state.compare}` : '');
  const text = svg('text', {x: pad, y: H - 12, 'font-size': 19, fill: '#334155', id: 'curve-legend'}, legend);
  text.append(svg('title', {}, legend));
  root.append(text);
  root.append(svg('text', {x: W - 10, y: H - 30, 'text-anchor': 'end', 'font-size': 19, fill: '#64748b'}, 'steps →'));
  document.getElementById('curve').replaceChildren(root);
  // a legend longer than the drawing (a long run name) is cut to fit, with its whole text on hover
  const room = W - pad - 6;
  try {
    if (text.getComputedTextLength() > room) {
      text.setAttribute('textLength', String(room));
      text.setAttribute('lengthAdjust', 'spacingAndGlyphs');
    }
  } catch (err) { /* not laid out: nothing to measure */ }
}

async function drawDecisionMap(row) {
  const box = document.getElementById('decision');
  if (!state.info.decision_map) { box.style.display = 'none'; return; }
  box.style.display = '';
  // its own count: two view switches in one instant must leave the map of the last one, whichever answer comes last
  const run = state.run, seq = ++state.mapSeq;
  const before = state.view === 'before' || state.view === 'forward';   // the map as the step found it
  let answer;
  try { answer = await getJSON('./decision_map', {run, step: row, before: before ? '1' : '0'}); } catch (err) { return; }
  if (!answer.available || seq !== state.mapSeq || run !== state.run) return;
  const map = answer.map;
  const grid = map.pass_confidence;
  if (!Array.isArray(grid) || !Array.isArray(grid[0])) return;
  const size = 300, left = 72, top = 16, bottom = 50;   // room above for the top label
  const rows = grid.length, cols = grid[0].length;
  const root = svg('svg', {viewBox: `0 0 ${left + size + 26} ${top + size + bottom}`, id: 'decision-svg'});
  grid.forEach((line, i) => line.forEach((p, j) => {
    const v = Math.round(255 * (p ?? 0.5));  // blue: PASS, red: FAIL
    root.append(svg('rect', {x: left + j * size / cols, y: top + (rows - 1 - i) * size / rows, width: size / cols + 0.5,
      height: size / rows + 0.5, fill: `rgb(${255 - v},${Math.round(0.6 * Math.min(v, 255 - v))},${v})`}));
  }));
  const [s0, s1] = [map.studied[0], map.studied[map.studied.length - 1]];
  const [c0, c1] = [map.score[0], map.score[map.score.length - 1]];
  const px = (v) => left + size * (v - s0) / (s1 - s0), py = (v) => top + size * (1 - (v - c0) / (c1 - c0));
  for (let v = Math.ceil(s0); v <= s1; v += 2) {
    root.append(svg('text', {x: px(v), y: top + size + 21, 'text-anchor': 'middle', 'font-size': 19}, `${v} h`));
  }
  for (let v = Math.ceil(c0 / 20) * 20; v <= c1; v += 20) {
    // the lowest label sits above its tick, clear of the hours below the corner
    root.append(svg('text', {x: left - 6, y: py(v) + (py(v) > top + size - 12 ? -4 : 6), 'text-anchor': 'end', 'font-size': 19}, `${v} %`));
  }
  root.append(svg('text', {x: left + size / 2, y: top + size + 45, 'text-anchor': 'middle', 'font-size': 19}, 'hours studied →'));
  const taken = [];  // boxes already used by dots and names: each name goes where it covers neither
  (map.students || []).forEach((f) => taken.push([px(f[0]) - 10, py(f[2]) - 10, px(f[0]) + 10, py(f[2]) + 10]));
  (map.students || []).forEach((f, k) => {
    const says = map.answers[k];  // the network's own answer for this student, at their own sleep
    const cx = px(f[0]), cy = py(f[2]);
    const dot = svg('circle', {cx, cy, r: 8, fill: says === 0 ? BLUE : RED, stroke: 'white', 'stroke-width': 2.5,
      class: 'student-dot', 'data-answer': says, 'data-truth': map.labels[k]});
    dot.append(svg('title', {}, `${map.names[k]}: the network says ${says === 0 ? 'PASS' : 'FAIL'} (${pct(map.student_pass[k])} PASS at ${f[1]} h sleep); truth ${map.labels[k] === 0 ? 'PASS' : 'FAIL'}`));
    root.append(dot);
    if (says !== map.labels[k]) {
      root.append(svg('path', {d: `M${cx - 10},${cy - 10}L${cx + 10},${cy + 10}M${cx - 10},${cy + 10}L${cx + 10},${cy - 10}`,
        stroke: 'black', 'stroke-width': 3, class: 'wrong'}));
    }
    const [x, y, anchor] = placeName(map.names[k], cx, cy, taken, [0, 0, left + size + 26, top + size + 26]);
    root.append(svg('text', {x, y, 'text-anchor': anchor, 'font-size': 19, fill: 'white', stroke: '#0f172a', 'stroke-width': 3,
      'paint-order': 'stroke', class: 'student-name'}, map.names[k]));
  });
  const when = before ? (row ? `before step ${state.info.step[row]}` : 'before training') : `after step ${state.info.step[row]}`;
  box.replaceChildren(el('h3', {}, `decision map ${when}, sleep held at ${fmt(map.slept, 1)} h`),
    root, el('div', {style: 'font-size: 16px; color: #475569'}, "blue PASS, red FAIL; dots: the network's answer for each student (own sleep); ✕ wrong"));
}

// A student's name beside their dot: right, left, above or below, the first place that covers no other dot or
// name and stays on the map (an estimate of the text's width: 19 px type, ~0.62 of its size a letter).
function placeName(name, cx, cy, taken, [x0, y0, x1, y1]) {
  const w = 0.62 * 19 * name.length, h = 19;
  const tries = [[cx + 12, cy + 6, 'start'], [cx - 12, cy + 6, 'end'], [cx, cy - 14, 'middle'], [cx, cy + 26, 'middle'],
    [cx + 12, cy - 12, 'start'], [cx - 12, cy - 12, 'start'], [cx + 12, cy + 24, 'start'], [cx - 12, cy + 24, 'end']];
  const box = ([x, y, anchor]) => {
    const a = anchor === 'start' ? x : anchor === 'end' ? x - w : x - w / 2;
    return [a, y - h + 4, a + w, y + 4];
  };
  const clear = (b) => taken.every((t) => b[2] <= t[0] || b[0] >= t[2] || b[3] <= t[1] || b[1] >= t[3]);
  const inside = (b) => b[0] >= x0 && b[2] <= x1 && b[1] >= y0 && b[3] <= y1;
  const spot = tries.find((t) => clear(box(t)) && inside(box(t))) || tries.find((t) => clear(box(t))) || tries[0];
  taken.push(box(spot));
  return spot;
}

// ---- the bridge: layers as blocks with summary numbers, not thousands of lines ----
function drawBlocks(step) {
  const head = el('tr', {}, ['layer', 'shape', 'what', 'mean', 'std', 'norm', 'min', 'max'].map((h) => el('th', {}, h)));
  const rows = [];
  for (const block of step.blocks) {
    for (const [what, s] of Object.entries(block.summary)) {
      rows.push(el('tr', {}, [el('td', {}, block.name), el('td', {}, (s.shape || block.shape).join('×')), el('td', {}, what),
        ...['mean', 'std', 'norm', 'min', 'max'].map((k) => el('td', {}, fmt(s[k])))]));
    }
  }
  document.getElementById('network').replaceChildren(el('table', {id: 'blocks'}, [head, ...rows]));
  document.getElementById('students').replaceChildren(el('p', {}, `loss of this step's batch: ${exact(step.loss)}`));
}

// ---- a new run from the tab: the server trains it with the nn-lesson command itself ----
async function newRun() {
  const status = document.getElementById('nr-status');
  const value = (id) => document.getElementById(id).value;
  const settings = {lr: value('nr-lr'), activation: value('nr-activation'), init: value('nr-init'), seed: value('nr-seed'),
    loss: value('nr-loss'), batch_size: value('nr-batch'), epochs: value('nr-epochs')};
  if (!state.token) {
    status.textContent = '“+ run” needs this server’s token: open the address printed where TensorBoard was started '
      + '(…#lesson&token=…) once in this browser';
    return;
  }
  status.textContent = 'training…';
  document.getElementById('nr-train').disabled = true;
  try {
    const response = await fetch('./new_run', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-Lesson-New-Run': state.token},
      body: JSON.stringify(settings)});
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    status.textContent = `trained: ${body.run}` + (body.exit_code === 3 ? ' (it diverged; what was recorded is kept)' : '');
    await listRuns();
    document.getElementById('run').value = body.run;
    await openRun(body.run, {row: state.row, mode: state.mode, page: state.stop + 1,
      view: state.viewChosen ? state.view : undefined});
  } catch (err) {
    status.textContent = String(err.message);
  } finally {
    document.getElementById('nr-train').disabled = false;
  }
}
