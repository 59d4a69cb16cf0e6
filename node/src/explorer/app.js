// Cairn block explorer: one static page reading the chain through this node's public
// JSON-RPC (POST /). No framework, nothing from another origin; every value from the
// chain is put in the page as text (textContent), never parsed as HTML.
'use strict';

const POLL_MS = 2000;
const RECENT = 15;
const CHART_BLOCKS = 200;
const HEX64 = /^(0x)?[0-9a-fA-F]{64}$/;
const ADDRESS = /^[0-9a-fA-F]{48}$/;

let pollTimer = null;
let shownBest = null;
// How the overview learns of new blocks: 'polling' until the new-heads subscription runs.
let liveVia = 'polling every 2 s';
// Reorgs reported by the subscription since this page opened, newest first.
const reorgs = [];
let redrawQueued = false;
// Overview redraws started so far, and the latest one shown (see overview()).
let overviewDraws = 0;
let overviewShown = 0;

async function rpc(method, params) {
  const resp = await fetch('/', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: params === undefined ? [] : params }),
  });
  let body;
  try {
    body = await resp.json();
  } catch (e) {
    throw new Error(`${method}: HTTP ${resp.status}, not JSON-RPC`);
  }
  if (body.error) {
    throw new Error(`${method}: ${body.error.message}`);
  }
  return body.result;
}

// Builds an element: el('td', {class: 'hash'}, 'text', childNode, ...). Strings become
// text nodes, so data can never become markup.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function link(href, text, cls) {
  return el('a', { href, class: cls }, text);
}
const blockLink = (hash, text) => link(`#/block/${hash}`, text === undefined ? hash : text, 'hash');
const txLink = (txid) => link(`#/tx/${txid}`, txid, 'hash');
const addrLink = (a) => (a === null ? '—' : link(`#/address/${a}`, a, 'hash'));

function fields(rows) {
  const dl = el('dl', { class: 'fields' });
  for (const [name, value, id] of rows) {
    dl.append(el('dt', {}, name), el('dd', { id }, value));
  }
  return dl;
}

function table(headers, rows, id) {
  const t = el('table', { id });
  const head = el('tr');
  for (const h of headers) head.append(el('th', { class: h.wide ? 'wide' : null }, h.name || h));
  t.append(el('thead', {}, head));
  const body = el('tbody');
  for (const r of rows) {
    const tr = el('tr');
    r.forEach((c, i) => tr.append(el('td', { class: headers[i].wide ? 'wide' : null }, c)));
    body.append(tr);
  }
  t.append(body);
  return el('div', { class: 'scroll' }, t);
}

function when(ms) {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

function hashrate(h) {
  const units = ['H/s', 'kH/s', 'MH/s', 'GH/s', 'TH/s'];
  let i = 0;
  while (h >= 1000 && i < units.length - 1) {
    h /= 1000;
    i++;
  }
  return `${i === 0 ? h : h.toFixed(2)} ${units[i]}`;
}

// Shows a page drawn for the URL fragment `at`, unless the reader has moved on meanwhile
// (a redraw that was waiting on the node must not replace the page now open).
function showAt(at, ...nodes) {
  if (location.hash !== at) return;
  document.getElementById('view').replaceChildren(...nodes);
}

function showError(msg) {
  const p = document.getElementById('error');
  p.textContent = msg || '';
  p.hidden = !msg;
}

// ---- overview ----

async function overview() {
  const at = location.hash;
  // A redraw (poll, new head) that starts after the reader has opened another page.
  if (routeOf(at).name !== 'overview') return;
  // Redraws overlap (a poll's and a new head's): one that finishes after a later one
  // was shown is dropped, so a slower, older one never puts the previous chain back on
  // the page (and every redraw that finishes first is shown: no starving under load).
  const draw = ++overviewDraws;
  const info = await rpc('chain_getInfo');
  const from = Math.max(0, info.height - RECENT + 1);
  const blocks = await rpc('chain_getBlocks', { from_height: from, count: info.height - from + 1 });
  blocks.reverse();
  const chartsShown = await charts(info.height);
  if (draw < overviewShown || location.hash !== at) return;
  overviewShown = draw;
  shownBest = info.best_hash;
  showAt(at,
    el('h1', {}, 'Overview'),
    fields([
      ['Chain id', info.chain_id, 'chain-id'],
      ['Height', info.height, 'height'],
      ['Best block', blockLink(info.best_hash), 'best-hash'],
      ['Next target', el('span', { class: 'hash' }, info.target), 'target'],
      ['Pending transfers', link('#/mempool', info.mempool_size), 'mempool-size'],
      ['Peers', link('#/peers', info.peers), 'peers'],
      ['Syncing', info.syncing ? 'yes' : 'no', 'syncing'],
      ['This node mines at', info.hashrate > 0 ? hashrate(info.hashrate) : 'not mining', 'hashrate'],
    ]),
    el('p', { class: 'live' }, 'Updates: ', el('span', { id: 'live' }, liveVia)),
    el('h2', {}, 'Reorgs seen since this page opened'),
    reorgs.length
      ? table(
          ['New branch from height', 'Blocks replaced', 'New head', { name: 'Seen at', wide: true }],
          reorgs.map((r) => [r.height, r.depth, blockLink(r.hash), when(r.seen_ms)]),
          'reorgs',
        )
      : el('p', { id: 'reorgs-none' }, 'None.'),
    el('h2', {}, 'Recent blocks'),
    table(
      ['Height', 'Hash', { name: 'Time', wide: true }, 'Txs', { name: 'Size', wide: true }],
      blocks.map((b) => [heightCell(b), blockLink(b.hash), when(b.timestamp_ms), b.tx_count, `${b.size} B`]),
      'recent-blocks',
    ),
    ...chartsShown,
  );
}

// A recent block's height, marked when it is the first block of a branch a reorg
// switched to.
function heightCell(b) {
  const r = reorgs.find((x) => x.hash === b.hash);
  if (!r) return blockLink(b.hash, b.height);
  const mark = el('span', { class: 'reorg-badge', title: `reorg: ${r.depth} block(s) replaced` }, `reorg −${r.depth}`);
  return el('span', {}, blockLink(b.hash, b.height), ' ', mark);
}

// Re-renders the overview when the best block or the mempool changes.
async function poll() {
  if (routeOf(location.hash).name !== 'overview') return;
  try {
    const info = await rpc('chain_getInfo');
    const size = document.getElementById('mempool-size');
    if (info.best_hash !== shownBest || (size && size.textContent !== String(info.mempool_size))) {
      await overview();
    }
    showError(null);
  } catch (e) {
    showError(`Cannot reach the node: ${e.message}`);
  }
}

// ---- new heads over the WebSocket (chain_subscribeNewHeads) ----

function redrawOverviewSoon() {
  if (redrawQueued || routeOf(location.hash).name !== 'overview') return;
  redrawQueued = true;
  // Heads come one per block, parent first: one redraw for a burst.
  setTimeout(async () => {
    redrawQueued = false;
    try {
      await overview();
    } catch (e) {
      showError(`Cannot reach the node: ${e.message}`);
    }
  }, 200);
}

function subscribeHeads() {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`);
  ws.addEventListener('open', () => {
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'chain_subscribeNewHeads', params: [] }));
  });
  ws.addEventListener('message', (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (e) {
      return;
    }
    if (msg.id === 1 && msg.result !== undefined) {
      liveVia = 'new heads over WebSocket';
      const live = document.getElementById('live');
      if (live) live.textContent = liveVia;
    } else if (msg.method === 'chain_newHead' && msg.params && msg.params.result) {
      const head = msg.params.result;
      if (head.reorg_depth > 0) {
        reorgs.unshift({ height: head.height, depth: head.reorg_depth, hash: head.hash, seen_ms: Date.now() });
        reorgs.length = Math.min(reorgs.length, 20);
      }
      redrawOverviewSoon();
    }
  });
  ws.addEventListener('close', () => {
    liveVia = 'polling every 2 s';
    const live = document.getElementById('live');
    if (live) live.textContent = `${liveVia} (WebSocket closed, retrying)`;
    setTimeout(subscribeHeads, 5000);
  });
}

// ---- charts (SVG drawn here) ----

const SVG = 'http://www.w3.org/2000/svg';

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

// A line chart of `values` (one per block, oldest first) with its min and max labelled.
// `heights[i]` is the height of `values[i]`; a dashed red line marks each height in
// `marks` (where a reorg's new branch starts).
function lineChart(id, title, values, unit, heights = [], marks = []) {
  const w = 600;
  const h = 120;
  const svg = svgEl('svg', { id, viewBox: `0 0 ${w} ${h}`, class: 'chart', role: 'img', 'aria-label': title });
  if (values.length >= 2) {
    const min = Math.min(...values);
    const max = Math.max(...values);
    const span = max - min || 1;
    const pts = values.map((v, i) => `${((i / (values.length - 1)) * (w - 4) + 2).toFixed(1)},${(h - 4 - ((v - min) / span) * (h - 8)).toFixed(1)}`);
    svg.append(svgEl('polyline', { points: pts.join(' '), fill: 'none', stroke: '#2f6db3', 'stroke-width': 1.5 }));
    heights.forEach((height, i) => {
      if (!marks.includes(height)) return;
      const x = ((i / (values.length - 1)) * (w - 4) + 2).toFixed(1);
      svg.append(svgEl('line', { x1: x, x2: x, y1: 0, y2: h, stroke: '#c0392b', 'stroke-dasharray': '4 3', class: 'reorg-mark' }));
    });
  }
  const stats = values.length
    ? `min ${Math.min(...values).toFixed(2)} ${unit}, max ${Math.max(...values).toFixed(2)} ${unit}, last ${values[values.length - 1].toFixed(2)} ${unit}`
    : 'not enough blocks yet';
  return el('figure', {}, el('figcaption', {}, `${title}: `, el('span', { id: `${id}-stats` }, stats)), svg);
}

// Expected hashes to meet a target, as bits (log2): 256 - log2(target), from its first
// 13 hex digits (52 bits, exact in a double).
function targetBits(target) {
  const lead = target.search(/[^0]/);
  if (lead < 0) return 256;
  const digits = target.slice(lead, lead + 13);
  return 256 - 4 * (64 - lead - digits.length) - Math.log2(parseInt(digits, 16));
}

async function charts(tip) {
  const from = Math.max(0, tip - CHART_BLOCKS + 1);
  const blocks = [];
  for (let h = from; h <= tip; h += 100) {
    blocks.push(...(await rpc('chain_getBlocks', { from_height: h, count: Math.min(100, tip - h + 1) })));
  }
  // Genesis carries the chain's fixed launch time, not a mining time: block 1's interval
  // is left out.
  const intervals = blocks
    .slice(1)
    .map((b, i) => [b.height, (b.timestamp_ms - blocks[i].timestamp_ms) / 1000])
    .filter(([h]) => h >= 2);
  const marks = reorgs.map((r) => r.height);
  const note = marks.length ? ' (dashed red: a reorg)' : '';
  return [
    lineChart('chart-interval', `Block interval, last ${intervals.length} blocks${note}`, intervals.map(([, s]) => s), 's', intervals.map(([h]) => h), marks),
    lineChart('chart-difficulty', `Difficulty (log2 of expected hashes per block), last ${blocks.length} blocks${note}`, blocks.map((b) => targetBits(b.target)), 'bits', blocks.map((b) => b.height), marks),
  ];
}

// ---- mempool and peers ----

async function mempoolPage() {
  const at = location.hash;
  const m = await rpc('mempool_getTransfers', { limit: 1000 });
  // Fee-rate histogram: buckets doubling from 1 base unit per byte.
  const buckets = new Map();
  for (const t of m.transfers) {
    const b = t.fee_rate < 1 ? 0 : Math.floor(Math.log2(t.fee_rate)) + 1;
    buckets.set(b, (buckets.get(b) || 0) + 1);
  }
  const keys = [...buckets.keys()].sort((a, b) => a - b);
  const most = Math.max(1, ...buckets.values());
  const hist = el('table', { id: 'fee-histogram' });
  for (const k of keys) {
    const label = k === 0 ? '< 1' : `${2 ** (k - 1)} – ${2 ** k}`;
    const bar = svgEl('svg', { width: 200, height: 12, class: 'bar' });
    bar.append(svgEl('rect', { x: 0, y: 0, height: 12, width: Math.max(2, (buckets.get(k) / most) * 200), fill: '#2f6db3' }));
    hist.append(el('tr', {}, el('td', {}, label), el('td', {}, bar), el('td', {}, buckets.get(k))));
  }
  showAt(at,
    el('h1', {}, 'Mempool'),
    fields([['Pending transfers', m.size, 'mempool-count']]),
    el('h2', {}, 'Fee rate (base units per byte)'),
    keys.length ? el('div', { class: 'scroll' }, hist) : el('p', {}, 'No pending transfers.'),
    el('h2', {}, m.transfers.length < m.size ? `Highest fee rate first (first ${m.transfers.length})` : 'Highest fee rate first'),
    table(
      ['Txid', 'From', 'To', 'Amount', 'Fee', 'Fee rate'],
      m.transfers.map((t) => [txLink(t.txid), addrLink(t.from), addrLink(t.to), t.amount, t.fee, t.fee_rate.toFixed(2)]),
      'mempool-txs',
    ),
  );
}

async function peersPage() {
  const at = location.hash;
  const peers = await rpc('net_peers');
  showAt(at,
    el('h1', {}, 'Peers'),
    el('p', { id: 'peer-count' }, `${peers.length} connected`),
    table(
      ['Address', 'Direction', 'Height', 'Ping', 'Agent'],
      peers.map((p) => [p.addr, p.inbound ? 'in' : 'out', p.height, p.ping_ms === null ? '—' : `${p.ping_ms} ms`, p.user_agent]),
      'peers',
    ),
  );
}

// ---- block ----

async function blockPage(id) {
  const at = location.hash;
  const b = /^\d+$/.test(id) ? await rpc('chain_getBlockByHeight', [Number(id)]) : await rpc('chain_getBlock', [id]);
  if (b === null) {
    showAt(at, el('h1', {}, 'Block not found'), el('p', { id: 'not-found' }, `No block ${id} is known to this node.`));
    return;
  }
  const next = b.status === 'main' ? await rpc('chain_getBlockHash', [b.height + 1]) : null;
  const txs = b.transactions || [];
  showAt(at,
    el('h1', {}, `Block ${b.height}`),
    el(
      'nav',
      { class: 'pager' },
      b.height > 0 ? blockLink(b.prev, `← ${b.height - 1}`) : el('span'),
      next ? blockLink(next, `${b.height + 1} →`) : el('span'),
    ),
    fields([
      ['Hash', el('span', { class: 'hash' }, b.hash), 'block-hash'],
      ['Height', b.height, 'block-height'],
      ['Status', b.invalid_reason ? `${b.status}: ${b.invalid_reason}` : b.status, 'block-status'],
      ['Confirmations', b.confirmations, 'block-confirmations'],
      ['Time', when(b.timestamp_ms), 'block-time'],
      ['Previous', b.height > 0 ? blockLink(b.prev) : '— (genesis)', 'block-prev'],
      ['Merkle root', el('span', { class: 'hash' }, b.merkle_root), 'block-merkle-root'],
      ['Target', el('span', { class: 'hash' }, b.target), 'block-target'],
      ['Nonce', b.nonce, 'block-nonce'],
      ['Version', b.version, 'block-version'],
      ['Size', b.size === null ? 'body not stored' : `${b.size} B`, 'block-size'],
    ]),
    el('h2', {}, `Transactions (${b.transactions === null ? 'body not stored' : txs.length})`),
    table(
      ['Txid', 'Kind', 'From', 'To', 'Amount', 'Fee'],
      txs.map((t) => [txLink(t.txid), t.kind, addrLink(t.from), addrLink(t.to), t.amount, t.fee]),
      'block-txs',
    ),
  );
}

// ---- transaction ----

function fromHex(h) {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(2 * i, 2), 16);
  return out;
}

function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function sha256(...parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    buf.set(p, off);
    off += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
}

const NO_SUBTLE = 'not checked: this browser offers SHA-256 only on https or localhost pages';

// The proof of work of a 124-byte header (docs/CONSENSUS.md): its SHA-256, read as a
// big-endian number, is at most its target (bytes 84..116). Equal-length lowercase hex
// compares like the numbers.
async function checkPow(p) {
  if (!(window.crypto && crypto.subtle)) return NO_SUBTLE;
  const header = fromHex(p.header_hex);
  const hash = toHex(await sha256(header));
  if (hash !== p.block_hash) return 'FAILED: the header does not hash to the block hash';
  return hash <= toHex(header.slice(84, 116)) ? 'verified: header hash ≤ its target' : 'FAILED: the header hash is above its target';
}

// The check of docs/RPC.md (chain_getTxProof): the header hashes to the block hash, and
// the path from the leaf SHA-256(0x00||txid) through nodes SHA-256(0x01||l||r), a lone
// last node promoted, ends at the header's merkle root (bytes 44..76).
async function checkProof(p) {
  if (!(window.crypto && crypto.subtle)) return NO_SUBTLE;
  const header = fromHex(p.header_hex);
  if (toHex(await sha256(header)) !== p.block_hash) return 'FAILED: the header does not hash to the block hash';
  let hash = await sha256(Uint8Array.of(0), fromHex(p.txid));
  let idx = p.proof.index;
  let count = p.proof.leaf_count;
  const sibs = p.proof.siblings.map(fromHex);
  if (idx >= count) return 'FAILED: index out of range';
  while (count > 1) {
    const promoted = idx === count - 1 && count % 2 === 1;
    if (!promoted) {
      const sib = sibs.shift();
      if (!sib) return 'FAILED: too few siblings';
      hash = idx % 2 === 0 ? await sha256(Uint8Array.of(1), hash, sib) : await sha256(Uint8Array.of(1), sib, hash);
    }
    idx = Math.floor(idx / 2);
    count = Math.ceil(count / 2);
  }
  if (sibs.length) return 'FAILED: too many siblings';
  return toHex(hash) === toHex(header.slice(44, 76)) ? 'proof verified' : 'FAILED: the path does not end at the merkle root';
}

async function txPage(txid) {
  const at = location.hash;
  const t = await rpc('chain_getTransaction', [txid]);
  if (t === null) {
    showAt(at, el('h1', {}, 'Transaction not found'), el('p', { id: 'not-found' }, `No transaction ${txid} is on the best chain or pending at this node.`));
    return;
  }
  const tx = t.tx;
  const rows = [
    ['Txid', el('span', { class: 'hash' }, tx.txid), 'tx-id'],
    ['Kind', tx.kind, 'tx-kind'],
    ['Status', t.status, 'tx-status'],
    ['Block', t.block_hash ? blockLink(t.block_hash, `${t.height} (${t.block_hash})`) : '— (pending)', 'tx-block'],
    ['Confirmations', t.confirmations, 'tx-confirmations'],
    ['From', addrLink(tx.from), 'tx-from'],
    ['To', addrLink(tx.to), 'tx-to'],
    ['Amount', tx.amount, 'tx-amount'],
    ['Fee', tx.fee, 'tx-fee'],
    ['Nonce', tx.nonce, 'tx-nonce'],
  ];
  let proofCell = null;
  let powCell = null;
  if (t.status === 'confirmed') {
    proofCell = el('span', {}, 'checking…');
    powCell = el('span', {}, 'checking…');
    rows.push(['Merkle proof (checked here)', proofCell, 'tx-proof'], ['Block proof of work (checked here)', powCell, 'tx-pow']);
  }
  showAt(at, el('h1', {}, tx.kind === 'coinbase' ? 'Coinbase' : 'Transfer'), fields(rows));
  if (proofCell) {
    const p = await rpc('chain_getTxProof', [tx.txid]);
    const put = (cell, verdict) => {
      cell.textContent = verdict;
      cell.className = /^(proof )?verified/.test(verdict) ? 'ok' : 'bad';
    };
    if (p === null) {
      put(proofCell, 'no proof: no longer on the best chain');
      put(powCell, 'not checked');
    } else {
      put(proofCell, await checkProof(p));
      put(powCell, await checkPow(p));
    }
  }
}

// ---- address ----

async function addressPage(address, before) {
  const at = location.hash;
  const params = before ? { address, before, limit: 25 } : { address, limit: 25 };
  const [acct, h] = await Promise.all([rpc('state_getAccount', [address]), rpc('state_getHistory', params)]);
  const parts = [
    el('h1', {}, 'Address'),
    fields([
      ['Address', el('span', { class: 'hash' }, h.address), 'address'],
      ['Balance', acct.balance, 'address-balance'],
      ['Next nonce', acct.nonce, 'address-nonce'],
    ]),
  ];
  if (h.pending.length) {
    parts.push(
      el('h2', {}, 'Pending'),
      table(
        ['Txid', 'Direction', 'Counterparty', 'Amount', 'Fee'],
        h.pending.map((e) => [txLink(e.txid), e.direction, addrLink(e.counterparty), e.amount, e.fee]),
        'address-pending',
      ),
    );
  }
  parts.push(
    el('h2', {}, 'Confirmed'),
    table(
      ['Txid', 'Block', 'Direction', 'Counterparty', 'Amount', 'Fee'],
      h.entries.map((e) => [txLink(e.txid), blockLink(e.block_hash, e.height), e.direction, addrLink(e.counterparty), e.amount, e.fee]),
      'address-history',
    ),
  );
  if (h.next) parts.push(el('nav', { class: 'pager' }, el('span'), link(`#/address/${address}/${h.next}`, 'older →')));
  showAt(at, ...parts);
}

// ---- search ----

async function search(raw) {
  const q = raw.trim();
  if (/^\d+$/.test(q)) return `#/block/${q}`;
  if (HEX64.test(q)) {
    const h = q.replace(/^0x/, '').toLowerCase();
    if ((await rpc('chain_getBlock', [h])) !== null) return `#/block/${h}`;
    if ((await rpc('chain_getTransaction', [h])) !== null) return `#/tx/${h}`;
    throw new Error(`No block or transaction ${h} is known to this node.`);
  }
  if (ADDRESS.test(q)) {
    // The node checks the address checksum and says what is wrong.
    try {
      await rpc('state_getAccount', [q]);
    } catch (e) {
      throw new Error(`Not a valid address: ${e.message.replace(/^state_getAccount: (bad address: )?/, '')}`);
    }
    return `#/address/${q.toLowerCase()}`;
  }
  if (/^[0-9a-fA-F]+$/.test(q)) {
    throw new Error(`"${q}" has ${q.length} hex characters: a block hash or txid has 64, an address 48.`);
  }
  throw new Error('Type a block height, a block hash, a txid (64 hex) or an address (48 hex).');
}

// ---- routing ----

function routeOf(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter((p) => p.length);
  if (parts.length === 0) return { name: 'overview' };
  if (parts[0] === 'mempool' && parts.length === 1) return { name: 'mempool' };
  if (parts[0] === 'peers' && parts.length === 1) return { name: 'peers' };
  if (parts[0] === 'block' && parts.length === 2) return { name: 'block', id: parts[1] };
  if (parts[0] === 'tx' && parts.length === 2) return { name: 'tx', id: parts[1] };
  if (parts[0] === 'search' && parts.length >= 2) return { name: 'search', id: parts.slice(1).join('/') };
  if (parts[0] === 'address' && (parts.length === 2 || parts.length === 3)) return { name: 'address', id: parts[1], before: parts[2] };
  return { name: 'unknown' };
}

async function render() {
  const at = location.hash;
  const r = routeOf(at);
  showError(null);
  try {
    if (r.name === 'overview') await overview();
    else if (r.name === 'mempool') await mempoolPage();
    else if (r.name === 'peers') await peersPage();
    else if (r.name === 'block') await blockPage(decodeURIComponent(r.id));
    else if (r.name === 'tx') await txPage(decodeURIComponent(r.id));
    else if (r.name === 'search') location.replace(await search(decodeURIComponent(r.id)));
    else if (r.name === 'address') await addressPage(decodeURIComponent(r.id), r.before && decodeURIComponent(r.before));
    else showAt(at, el('h1', {}, 'Not found'), el('p', {}, 'No such page: '), link('#/', 'back to the overview'));
  } catch (e) {
    if (location.hash !== at) return;
    showAt(at, el('h1', {}, 'Error'));
    showError(e.message);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('search').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = document.getElementById('q');
    try {
      const target = await search(input.value);
      showError(null);
      if (location.hash === target) await render();
      else location.hash = target;
    } catch (e) {
      showError(e.message);
    }
  });
  window.addEventListener('hashchange', render);
  render();
  pollTimer = setInterval(poll, POLL_MS);
  subscribeHeads();
});
