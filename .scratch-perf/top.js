// usage: node top.js file.cpuprofile [n]
const fs = require('fs');
const p = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const n = Number(process.argv[3] ?? 30);
const byId = new Map(p.nodes.map((x) => [x.id, x]));
const self = new Map();
const dt = p.timeDeltas; const total = dt.reduce((a, b) => a + b, 0);
const counts = new Map();
p.samples.forEach((id, i) => counts.set(id, (counts.get(id) ?? 0) + (dt[i] ?? 0)));
for (const [id, t] of counts) { const nd = byId.get(id); const cf = nd.callFrame; const k = `${cf.functionName || '(anon)'} ${cf.url.replace(/.*node_modules\//, 'nm/').replace(/.*\/work\/main\//, '')}:${cf.lineNumber}`; self.set(k, (self.get(k) ?? 0) + t); }
// inclusive by function key
const parent = new Map(); for (const nd of p.nodes) for (const c of nd.children ?? []) parent.set(c, nd.id);
const incl = new Map();
for (const [id, t] of counts) { const seen = new Set(); let cur = id; while (cur !== undefined) { const cf = byId.get(cur).callFrame; const k = `${cf.functionName || '(anon)'} ${cf.url.replace(/.*node_modules\//, 'nm/').replace(/.*\/work\/main\//, '')}:${cf.lineNumber}`; if (!seen.has(k)) { seen.add(k); incl.set(k, (incl.get(k) ?? 0) + t); } cur = parent.get(cur); } }
console.log(`total ${(total / 1000).toFixed(0)} ms`);
console.log('--- self'); [...self].sort((a, b) => b[1] - a[1]).slice(0, n).forEach(([k, t]) => console.log(`${(t / 1000).toFixed(0).padStart(7)} ms ${(100 * t / total).toFixed(1).padStart(5)}%  ${k}`));
console.log('--- inclusive'); [...incl].sort((a, b) => b[1] - a[1]).slice(0, n).forEach(([k, t]) => console.log(`${(t / 1000).toFixed(0).padStart(7)} ms ${(100 * t / total).toFixed(1).padStart(5)}%  ${k}`));
