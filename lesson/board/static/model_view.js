// Your own model in the Lesson tab: the model as a picture of its health (lesson/board/model_view.py serves it).
// Each recorded module is a block in the model's order, one row per parent (stem, layers.0, …, head), coloured by
// a health measure of the step on screen on one scale for every step: the update-to-weight ratio (log scale, 1e-3
// marked), the weight's gradient norm, or the share of dead / saturated outputs. Click a block: its numbers and
// its activation, activation-gradient and weight-gradient histograms at this step. Below: every weight's
// update:data ratio over the steps, on log10, beside the 1e-3 line (Karpathy's makemore part 3).
// vs: a second model run's picture below the first, on the same colour scale (the server spans both runs'
// gradient norms), its numbers beside the first's in the block's table. A group row folds to one block coloured by
// its worst block (the server names it). Imported by index.js, which calls drawModelView(step, other, names) for a
// model run and hideModelView() for any other; the measure, the open block and the folded groups go in its hash.

const SVG = 'http://www.w3.org/2000/svg';
// eight colour bins, low to high (a sequential palette that reads in grey too); no value: grey
export const PALETTE = ['#fde725', '#b5de2b', '#6ece58', '#35b779', '#1f9e89', '#26828e', '#31688e', '#443983'];
const NONE = '#e2e8f0';
const MEASURES = {
  ratio: {button: 'update ratio', what: 'update-to-weight ratio'},
  grad_norm: {button: 'gradient norm', what: "weight's gradient norm"},
  dead: {button: 'dead share', what: 'dead / saturated share of outputs'},
};
const view = {measure: 'ratio', selected: null, step: null, other: null, names: {}, run: null, folded: new Set(),
  built: false, changed: () => {}};
const FOLD_ABOVE = 14;   // a model with more group rows than this opens with every group folded

const STYLE = `
  #model-view { display: none; grid-template-columns: minmax(0, 1.25fr) minmax(0, 1fr); gap: 10px; }
  body.model-run #grid { display: none !important; }
  body.model-run #model-view { display: grid; }
  #mv-left, #mv-right { min-width: 0; display: flex; flex-direction: column; gap: 6px; min-height: 0; }
  #mv-blocks-panel { flex: 1; min-height: 0; overflow: hidden; display: flex; flex-direction: column; }
  #mv-detail-panel { flex: 1; min-height: 0; overflow-y: auto; overflow-x: hidden; }
  #mv-series-panel { flex: none; }
  #mv-measures { display: flex; gap: 4px; flex-wrap: wrap; margin: 2px 0; }
  #mv-measures button { font-size: 14px; padding: 1px 6px; }
  #mv-measures button.on { background: #1e293b; color: white; }
  #mv-blocks { flex: 1; min-height: 0; display: flex; flex-direction: column; gap: 4px; }
  .mv-picture { flex: 1 1 0; min-height: 0; display: flex; flex-direction: column; }
  .mv-picture-title { font-weight: bold; font-size: 14px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  .mv-picture svg { flex: 1 1 0; min-height: 0; width: 100%; height: 100%; display: block; }
  #mv-blocks text.group { cursor: pointer; }
  #mv-fold { margin-left: auto; }
  #mv-legend svg { width: 100%; max-width: 440px; height: auto; display: block; }
  #mv-detail table { font-size: 14px; }
  #mv-detail td, #mv-detail th { padding: 0 6px; }
  #mv-numbers th { max-width: 150px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .mv-hists { display: flex; gap: 4px; }
  .mv-hists svg { flex: 1; min-width: 0; width: 100%; height: auto; display: block; }
  #mv-detail.two .mv-hists svg { max-height: 70px; }
  #mv-series svg { width: 100%; height: auto; max-height: 200px; display: block; }
  #mv-blocks rect.block { cursor: pointer; }
  #mv-blocks rect.block.picked { stroke: #dc2626; stroke-width: 3; }
  #mv-blocks rect.block.never-ran { stroke-dasharray: 4 3; }
  #mv-never-ran { font-size: 14px; color: #b45309; margin: 2px 0; }
`;

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of [].concat(children ?? [])) node.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child);
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const num = (v) => (v === null || v === undefined ? '–' : Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)
  ? Number(v).toExponential(2) : String(Number(Number(v).toPrecision(3))));
const pct = (v) => (v === null || v === undefined ? '–' : (100 * v).toFixed(1) + ' %');

function build() {
  if (view.built) return;
  view.built = true;
  document.head.append(el('style', {}, STYLE));
  const measures = el('div', {id: 'mv-measures'}, [...Object.entries(MEASURES).map(([k, m]) =>
    el('button', {id: 'mv-measure-' + k, title: 'colour the blocks by the ' + m.what}, m.button)),
    el('button', {id: 'mv-fold', title: 'fold every group row to one block (its worst), or open them all'}, 'fold all')]);
  const root = el('div', {id: 'model-view'}, [
    el('div', {id: 'mv-left'}, [
      el('div', {class: 'panel', id: 'mv-blocks-panel'}, [
        el('h3', {id: 'mv-title'}, 'your model, by module path: its health at this step'),
        measures, el('div', {id: 'mv-blocks'}), el('div', {id: 'mv-legend'})]),
    ]),
    el('div', {id: 'mv-right'}, [
      el('div', {class: 'panel', id: 'mv-detail-panel'}, [el('h3', {id: 'mv-detail-title'}, 'click a block'), el('div', {id: 'mv-detail'})]),
      el('div', {class: 'panel', id: 'mv-series-panel'}, [
        el('h3', {id: 'mv-series-title'}, 'update:data ratio of each weight over the steps (log10)'), el('div', {id: 'mv-series'})]),
    ]),
  ]);
  document.body.append(root);
  for (const k of Object.keys(MEASURES)) {
    document.getElementById('mv-measure-' + k).addEventListener('click', () => { view.measure = k; redraw(); view.changed(); });
  }
  document.getElementById('mv-fold').addEventListener('click', () => {
    const groups = view.step ? view.step.groups.map((_, i) => i) : [];
    view.folded = view.folded.size === groups.length ? new Set() : new Set(groups);
    redraw(); view.changed();
  });
  window.addEventListener('resize', () => { if (document.body.classList.contains('model-run')) { size(); redraw(); } });
}

// What the address keeps of this view (index.js writes it with the run and the step): the measure, the open block,
// the folded groups (their row numbers: a module's name may hold any character).
export function modelViewHash() {
  const out = {measure: view.measure};
  if (view.selected !== null) out.block = view.selected;
  if (view.step) out.fold = [...view.folded].sort((a, b) => a - b).join(',') || 'none';
  return out;
}

// The view asked for by the address, before the run's first step is drawn; `changed` is called when the user
// changes it (index.js writes the address again).
export function wantModelView(wanted, changed) {
  if (wanted.measure && MEASURES[wanted.measure]) view.measure = wanted.measure;
  if (wanted.block) view.selected = wanted.block;
  view.wantedFold = wanted.fold;
  if (changed) view.changed = changed;
}

// the view ends at the window's bottom edge: its panels scroll inside, never the page
function size() {
  const root = document.getElementById('model-view');
  const top = root.getBoundingClientRect().top;
  root.style.height = Math.max(300, window.innerHeight - top - 10) + 'px';
}

export function hideModelView() {
  document.body.classList.remove('model-run');
}

// `step`: the run's /model_step answer; `other`: the compared run's at the same step (null: none or no such step);
// `names`: {run, compare, note}: the runs' names, and why the compared run shows nothing, when it does not.
export function drawModelView(step, other = null, names = {}) {
  build();
  document.body.classList.add('model-run');
  if (names.run !== view.run) {           // another run: its own groups; the folding the address asked for, once
    view.run = names.run;
    const fold = view.wantedFold;
    view.wantedFold = undefined;
    if (fold !== undefined) {
      view.folded = new Set(fold === 'none' ? [] : fold.split(',').map(Number).filter((i) => Number.isInteger(i) && i >= 0 && i < step.groups.length));
    } else {
      view.folded = new Set(step.groups.length > FOLD_ABOVE ? step.groups.map((_, i) => i) : []);
    }
  }
  if (!step.blocks.some((b) => b.name === view.selected)) view.selected = null;
  view.step = step;
  view.other = other;
  view.names = names;
  if (view.selected === null) {
    const first = step.blocks.find((b) => b.ratio !== null) || step.blocks[0];
    view.selected = first ? first.name : null;
  }
  const message = document.getElementById('message');
  if (message) {
    message.textContent = `Your model: ${step.blocks.length} recorded modules; numbers from ` +
      (step.full_row ? 'every number of this step' : 'the statistics of this step') +
      (step.statistics ? ` (statistics of every step: ${step.statistics})` : '') + '.' +
      (step.statistics_steps && step.rows < step.statistics_steps
        ? ` Every number was kept at ${step.rows} of ${step.statistics_steps} steps: the slider moves between those;` +
          ' the chart shows every step.' : '');
  }
  size();
  redraw();
}

function redraw() {
  const step = view.step;
  if (!step) return;
  for (const k of Object.keys(MEASURES)) document.getElementById('mv-measure-' + k).className = view.measure === k ? 'on' : '';
  document.getElementById('mv-fold').textContent = view.folded.size === step.groups.length && step.groups.length ? 'open all' : 'fold all';
  const two = Boolean(view.names.compare);
  const aspect = room(two ? 2 : 1, two);
  const pictures = [picture(step, two ? view.names.run : null, 'mv-blocks-svg', aspect)];
  if (view.other) pictures.push(picture(view.other, view.names.compare, 'mv-blocks-svg-compare', aspect));
  else if (two) pictures.push(el('div', {class: 'mv-picture-title', id: 'mv-compare-note'}, view.names.note || ''));
  document.getElementById('mv-blocks').replaceChildren(...pictures);
  drawLegend(step);
  drawDetail(step);
  drawSeries(step);
}

// ---- the blocks: one row per group, blocks in the model's order; a folded group is one block ----
// One run's picture: its title (the run's name and the step's loss, when two runs are on screen) and its blocks.
function picture(step, title, id, aspect) {
  const box = el('div', {class: 'mv-picture'});
  if (title) {
    const text = `${title} · loss ${num(step.loss)}`;
    box.append(el('div', {class: 'mv-picture-title', title: text}, text));
  }
  box.append(drawBlocks(step, id, aspect));
  return box;
}

// The room one picture has, height over width (pictures: how many share the panel; titled: each has a title line).
function room(pictures, titled) {
  const box = document.getElementById('mv-blocks');
  const w = box.clientWidth, h = box.clientHeight;
  if (!w || !h) return null;
  return Math.max(0.05, ((h - 4 * (pictures - 1)) / pictures - (titled ? 20 : 0)) / w);
}

function drawBlocks(step, id, aspect) {
  const byName = Object.fromEntries(step.blocks.map((b) => [b.name, b]));
  const groupChar = 12 * 0.62;
  // rows as tall as the room allows (34 at most, 16 at least): many rows get thinner, their type stays readable
  const W = 640, rows = Math.max(1, step.groups.length);
  const gap = aspect && (W * aspect) / rows < 40 ? 4 : 6;
  const rowH = aspect ? Math.min(34, Math.max(16, (W * aspect - gap) / rows - gap)) : 34;
  // the group names' column: as wide as the longest name needs, at most a third of the picture
  const label = Math.min(240, Math.max(110, 24 + groupChar * (2 + Math.max(0, ...step.groups.map((g) => g.name.length)))));
  const widest = Math.max(1, ...step.groups.map((g, i) => (view.folded.has(i) ? 1 : g.blocks.length)));
  const bw = Math.min(90, (W - label - 4) / widest);
  // the blocks' names: smaller type where a row is crowded (down to 8), cut with '…' only below that
  const shortOf = (g, n) => (n.startsWith(g.name + '.') ? n.slice(g.name.length + 1) : n.split('.').pop());
  const longest = Math.max(1, ...step.groups.flatMap((g) => g.blocks.map((n) => shortOf(g, n).length)));
  const font = Math.max(8, Math.min(11, (bw - 8) / (0.62 * longest))), charW = font * 0.62;
  const H = step.groups.length * (rowH + gap) + gap;
  const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'xMinYMin meet', id,
    'data-step': step.step, 'data-measure': view.measure});
  step.groups.forEach((g, i) => {
    const y = gap + i * (rowH + gap);
    const folded = view.folded.has(i);
    const name = svg('text', {x: 4, y: y + rowH / 2 + 4, 'font-size': 12, class: 'group', 'data-group': i,
      'data-folded': folded ? '1' : '0'}, (folded ? '▸ ' : '▾ ') + fitLeft(g.name, (label - 10) / groupChar - 2));
    const row = svg('g', {class: 'group-row'});
    row.append(svg('title', {}, `${g.name} (${g.blocks.length} ${g.blocks.length === 1 ? 'block' : 'blocks'}): click to ${folded ? 'open' : 'fold'}`), name);
    name.addEventListener('click', () => {
      if (view.folded.has(i)) view.folded.delete(i); else view.folded.add(i);
      redraw(); view.changed();
    });
    root.append(row);
    if (folded) {
      const worst = g.worst[view.measure];
      const bin = worst ? worst.bin : null;
      const width = W - label - 4;
      const short = (n) => (n.startsWith(g.name + '.') ? n.slice(g.name.length + 1) : n.split('.').pop());
      const rect = svg('rect', {x: label + 1, y, width: width - 3, height: rowH, rx: 4, fill: bin === null ? NONE : PALETTE[bin],
        stroke: '#475569', 'stroke-width': 1, 'stroke-dasharray': '2 2', class: 'block folded', 'data-group': i,
        'data-bin': bin ?? '', 'data-worst': worst ? worst.block : ''});
      rect.append(svg('title', {}, `${g.name}, folded: ${g.blocks.length} blocks, coloured by ${step.worst_rule[view.measure]}: ` +
        (worst ? `${worst.block}, ${value(byName[worst.block], view.measure)}` : 'none of its blocks has one')));
      rect.addEventListener('click', () => { view.folded.delete(i); redraw(); view.changed(); });
      root.append(rect);
      const dark = bin !== null && bin >= 4;
      const what = worst ? `worst ${short(worst.block)}: ${value(byName[worst.block], view.measure)}` : `no ${MEASURES[view.measure].button}`;
      root.append(svg('text', {x: label + width / 2 - 0.5, y: y + rowH / 2 + 4, 'font-size': font, 'text-anchor': 'middle',
        fill: dark ? 'white' : '#1e293b', 'pointer-events': 'none'}, fit(`${g.blocks.length} ${g.blocks.length === 1 ? 'block' : 'blocks'} · ${what}`, (width - 10) / charW)));
      return;
    }
    g.blocks.forEach((blockName, j) => {
      const b = byName[blockName];
      const bin = b.bins[view.measure];
      const fill = bin === null || bin === undefined ? NONE : PALETTE[bin];
      const x = label + j * bw;
      const rect = svg('rect', {x: x + 1, y, width: bw - 3, height: rowH, rx: 4, fill, stroke: '#475569', 'stroke-width': 1,
        class: 'block' + (blockName === view.selected ? ' picked' : '') + (b.never_ran ? ' never-ran' : ''),
        'data-name': blockName, 'data-bin': bin ?? ''});
      rect.append(svg('title', {}, `${blockName}${b.type ? ` (${b.type})` : ''}: ${MEASURES[view.measure].what} ${value(b, view.measure)}` + (b.never_ran ? `; ${b.never_ran}` : '')
        + (view.measure === 'ratio' && b.ratio_note ? `; ${b.ratio_note}` : '')));
      rect.addEventListener('click', () => { view.selected = blockName; redraw(); view.changed(); });
      root.append(rect);
      // a Sequential's children are numbers: the block says what it is instead (Conv2d, BatchNorm2d; the number on hover)
      const short = /^\d+(#\d+)?$/.test(shortOf(g, blockName)) && b.type ? b.type : shortOf(g, blockName);
      const dark = bin !== null && bin !== undefined && bin >= 4;
      root.append(svg('text', {x: x + bw / 2 - 0.5, y: y + rowH / 2 + 4, 'font-size': font, 'text-anchor': 'middle',
        fill: dark ? 'white' : '#1e293b', 'pointer-events': 'none'}, fit(short, (bw - 8) / charW)));
    });
  });
  return root;
}

// a group's name cut from the left, so that the part that tells rows apart (layers.3.self_attn) stays
function fitLeft(text, chars) {
  chars = Math.max(2, Math.floor(chars));
  return text.length <= chars ? text : '…' + text.slice(text.length - chars + 1);
}

function fit(text, chars) {
  chars = Math.max(1, Math.floor(chars));
  return text.length <= chars ? text : text.slice(0, Math.max(1, chars - 1)) + '…';
}

function value(b, measure) {
  if (measure === 'ratio') return num(b.ratio);
  if (measure === 'grad_norm') return num(b.grad_norm);
  return b.dead === null ? '– (' + (b.dead_note || 'not computable') + ')' : `${pct(b.dead)} ${b.dead_kind}`;
}

// ---- one legend: the colour bins of the measure on screen, the same at every step ----
function drawLegend(step) {
  const scale = step.scale[view.measure];
  const W = 440, H = 42, x0 = 26, bw = 40, n = scale.bins;
  const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, id: 'mv-legend-svg'});
  for (let i = 0; i < n; i++) root.append(svg('rect', {x: x0 + i * bw, y: 2, width: bw, height: 14, fill: PALETTE[i]}));
  root.append(svg('rect', {x: x0 + n * bw + 8, y: 2, width: 14, height: 14, fill: NONE, stroke: '#94a3b8'}));
  root.append(svg('text', {x: x0 + n * bw + 26, y: 14, 'font-size': 11}, 'none'));
  const tick = (at, text, strong) => {
    const x = x0 + at * bw;
    root.append(svg('line', {x1: x, x2: x, y1: 0, y2: 20, stroke: strong ? '#dc2626' : '#475569', 'stroke-width': strong ? 2 : 1}));
    root.append(svg('text', {x, y: 32, 'font-size': 11, 'text-anchor': 'middle', fill: strong ? '#dc2626' : '#1e293b'}, text));
  };
  if (view.measure === 'ratio') {
    const [lo, hi] = scale.log10;
    for (let e = lo; e <= hi; e++) tick((e - lo) / (hi - lo) * n, `1e${e}`, e === Math.log10(scale.rule));
  } else if (view.measure === 'grad_norm' && scale.log10) {
    const [lo, hi] = scale.log10;
    tick(0, num(10 ** lo)); tick(n, num(10 ** hi));
  } else if (view.measure === 'dead') {
    tick(0, '0 %'); tick(n / 2, '50 %'); tick(n, '100 %');
  }
  const line = 'font-size: 13px; color: #475569; white-space: nowrap; overflow: hidden; text-overflow: ellipsis';
  const legend = scale.label + (view.measure === 'ratio' ? '; red: 1e-3, a healthy update' : '');
  const folded = `a folded row ▸: its worst block, ${step.worst_rule[view.measure]}; a dashed outline: never ran`;
  document.getElementById('mv-legend').replaceChildren(root,
    el('div', {id: 'mv-legend-text', style: line, title: legend}, legend),
    el('div', {id: 'mv-legend-fold', style: line, title: folded}, folded));
}

// ---- the block clicked: its numbers and its three histograms at this step (vs: the second run's beside) ----
function numbers(b) {
  if (!b) return ['–', '–', '–', '–', '–'];
  return [
    b.ratio === null && b.ratio_note ? '– (weights all equal)' : num(b.ratio) + (b.main ? ` (${b.main.split('.').pop()})` : ''),
    num(b.grad_norm),
    num((b.params.find((p) => p.name === b.main) || {}).grad_data ?? null),
    b.dead === null ? '–' : `${pct(b.dead)} ${b.dead_kind}`,
    b.source === 'statistics' ? 'statistics' : b.source === 'full' ? 'every number' : '–',
  ];
}

function drawDetail(step) {
  const b = step.blocks.find((x) => x.name === view.selected);
  const title = document.getElementById('mv-detail-title');
  const detail = document.getElementById('mv-detail');
  if (!b) { title.textContent = 'click a block'; detail.replaceChildren(); return; }
  title.textContent = `${b.name} at step ${step.step}`;
  title.title = b.type ? `${b.name} is a ${b.type}` : '';
  const other = view.other ? view.other.blocks.find((x) => x.name === b.name) || null : null;
  const labels = ['update-to-weight ratio', 'gradient norm', 'grad:data ratio', 'dead / saturated share', 'numbers from'];
  const meaning = [  // what each number is, on hover: one measure has three names in the literature
    'std(update) / std(weight before the step): the "update ratio" of the blocks and the "update:data ratio" of the chart',
    'the L2 norm of the weight\'s gradient at this step',
    'std(gradient) / std(weight): how large the gradient is beside the weight it changes (makemore part 3)',
    'the share of outputs exactly 0 (ReLU) or beyond ±0.97 (tanh, sigmoid near 0 or 1)',
    'every number of this step, or the statistics the Recorder kept of every step'];
  const mine = numbers(b), theirs = numbers(other);
  const head = view.other ? [el('tr', {}, [el('th', {}, ''), el('th', {}, view.names.run || ''), el('th', {}, view.names.compare || '')])] : [];
  const why = (x, i) => (i === 0 && x && x.ratio_note ? {title: x.ratio_note} : {});  // the ratio cell says why it has none
  const table = el('table', {id: 'mv-numbers'}, [...head, ...labels.map((k, i) => el('tr', {}, [el('td', {title: meaning[i]}, k), el('td', why(b, i), mine[i]),
    ...(view.other ? [el('td', {class: 'compare', ...why(other, i)}, theirs[i])] : [])]))]);
  const ran = b.never_ran ? 'never ran' : 'not recorded';
  const parts = [table];
  if (b.never_ran) parts.push(el('div', {id: 'mv-never-ran'}, b.never_ran));
  parts.push(hists(b, ran, view.other ? view.names.run : null));
  if (view.other) {
    parts.push(other ? hists(other, other.never_ran ? 'never ran' : 'not recorded', view.names.compare)
      : el('div', {style: 'font-size: 13px; color: #64748b'}, `${view.names.compare} has no module ${b.name}`));
  }
  if (b.dead === null && b.dead_note && !b.never_ran) parts.push(el('div', {style: 'font-size: 13px; color: #64748b'}, b.dead_note));
  detail.className = view.other ? 'two' : '';
  detail.replaceChildren(...parts);
}

function hists(b, missing, run) {
  const row = el('div', {class: 'mv-hists'}, [
    histogram('activation', b.hist_act, missing), histogram('activation gradient', b.hist_act_grad, missing),
    histogram('weight gradient', b.hist_weight_grad, b.main ? 'not recorded' : 'no weights')]);
  if (!run) { row.id = 'mv-hists'; return row; }
  return el('div', {}, [el('div', {class: 'mv-picture-title', style: 'font-size: 13px'}, run), row]);
}

function histogram(name, h, missing = 'not recorded') {
  const W = 160, H = 96, top = 16, bottom = 20;
  const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, class: 'mv-hist', 'data-what': name});
  root.append(svg('text', {x: W / 2, y: 11, 'font-size': 11, 'text-anchor': 'middle'}, name));
  if (!h) {
    root.append(svg('text', {x: W / 2, y: H / 2 + 6, 'font-size': 11, 'text-anchor': 'middle', fill: '#64748b'}, missing));
    return root;
  }
  const top_ = Math.max(1e-12, ...h.counts.map((c) => c || 0));
  const bw = (W - 8) / h.counts.length;
  h.counts.forEach((c, i) => {
    const hh = ((c || 0) / top_) * (H - top - bottom);
    root.append(svg('rect', {x: 4 + i * bw, y: H - bottom - hh, width: Math.max(0.5, bw - 1), height: hh, fill: '#64748b'}));
  });
  root.append(svg('text', {x: 3, y: H - 5, 'font-size': 10}, num(h.lo)));
  root.append(svg('text', {x: W - 3, y: H - 5, 'font-size': 10, 'text-anchor': 'end'}, num(h.hi)));
  return root;
}

// ---- every weight's update:data ratio over the steps, log10, the 1e-3 line (vs: the second run's dashed) ----
function drawSeries(step) {
  const s = step.series;
  const o = view.other ? view.other.series : null;
  const W = 520, H = 200, left = 34, right = 8, top = 8, bottom = 26;
  const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, id: 'mv-series-svg'});
  const runs = [s, ...(o && o.steps.length ? [o] : [])];
  const values = runs.flatMap((r) => r.layers.flatMap((l) => l.log10.filter((v) => v !== null)));
  if (!s.steps.length || !values.length) {
    root.append(svg('text', {x: W / 2, y: H / 2, 'font-size': 12, 'text-anchor': 'middle'}, 'no updates recorded'));
    document.getElementById('mv-series').replaceChildren(root);
    return;
  }
  const lo = Math.floor(Math.min(-4, ...values)), hi = Math.ceil(Math.max(-2, ...values));
  const s0 = Math.min(...runs.map((r) => r.steps[0]));
  const last = Math.max(...runs.map((r) => r.steps[r.steps.length - 1]));
  const s1 = Math.max(last, s0 + 1);
  const X = (t) => left + ((t - s0) / (s1 - s0)) * (W - left - right);
  const Y = (v) => top + ((hi - v) / (hi - lo)) * (H - top - bottom);
  const every = Math.max(1, Math.ceil((hi - lo) / 6));
  for (let e = lo; e <= hi; e += every) {
    root.append(svg('line', {x1: left, x2: W - right, y1: Y(e), y2: Y(e), stroke: '#e2e8f0'}));
    root.append(svg('text', {x: left - 3, y: Y(e) + 4, 'font-size': 10, 'text-anchor': 'end'}, String(e)));
  }
  const order = Object.fromEntries(s.layers.map((l, k) => [l.name, k]));
  const n = Math.max(1, s.layers.length - 1);
  runs.forEach((r, which) => r.layers.forEach((l, k) => {
    let d = '';
    l.log10.forEach((v, i) => { if (v !== null) d += `${d && l.log10[i - 1] !== null ? 'L' : 'M'}${X(r.steps[i]).toFixed(1)},${Y(v).toFixed(1)}`; });
    const picked = l.name === view.selected;
    const at = order[l.name] ?? k;
    const hue = Math.round(240 - (240 * Math.min(at, n)) / n);   // the first layer blue, the last red
    const path = svg('path', {d, fill: 'none', stroke: `hsl(${hue}, 70%, 45%)`, 'stroke-width': picked ? 3 : 1.2,
      'data-layer': l.name, 'data-run': which ? 'compare' : 'run', opacity: picked || !view.selected ? 1 : 0.55,
      ...(which ? {'stroke-dasharray': '5 3'} : {})});
    path.append(svg('title', {}, which ? `${l.name} (${view.names.compare})` : l.name));
    root.append(path);
  }));
  root.append(svg('line', {x1: left, x2: W - right, y1: Y(-3), y2: Y(-3), stroke: '#dc2626', 'stroke-width': 1.5, 'stroke-dasharray': '6 4', id: 'mv-rule'}));
  root.append(svg('text', {x: W - right - 2, y: Y(-3) - 3, 'font-size': 10, 'text-anchor': 'end', fill: '#dc2626'}, '1e-3'));
  root.append(svg('line', {x1: X(step.step), x2: X(step.step), y1: top, y2: H - bottom, stroke: '#1e293b', 'stroke-dasharray': '2 3', id: 'mv-now'}));
  root.append(svg('text', {x: left, y: H - 3, 'font-size': 10}, `step ${s0}`));
  const key = runs.length > 1 ? `blue the first weight, red the last; dashed: ${view.names.compare}`
    : s.layers.length > 1 ? `${s.layers.length} weights: blue the first, red the last; hover a line for its name` : 'hover the line for its name';
  root.append(svg('text', {x: (left + W - right) / 2, y: H - 3, 'font-size': 10, 'text-anchor': 'middle', fill: '#475569', id: 'mv-series-key'},
    fit(key, (W - left - right - 90) / (10 * 0.56))));   // room between 'step 0' and the last step
  root.append(svg('text', {x: W - right, y: H - 5, 'font-size': 10, 'text-anchor': 'end'}, `step ${last}`));
  document.getElementById('mv-series').replaceChildren(root);
}
