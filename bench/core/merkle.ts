/**
 * Merkle benchmark: build over N records, incremental updates, and a verify exchange between two
 * trees that differ in a few records. Every figure is printed with how it was measured.
 */
import { createHash } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { MerkleTree, type MerkleEntry } from '../../libs/sync-core/src/merkle';
import { answerVerify, startVerify, stepVerify, type MerkleVerifyRequest, type MerkleVerifyResponse } from '../../libs/sync-core/src/merkle-verify';

const N = 1_000_000;
const DIFFERENCES = 10;
const UPDATES = 100_000;

/** Deterministic fake record hashes: sha256 of the index, so runs are comparable. */
function fakeHash(i: number): string {
  return createHash('sha256').update(`record-${i}`).digest('hex');
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

export async function runMerkleBench(): Promise<void> {
  const hasGc = typeof (globalThis as { gc?: unknown }).gc === 'function';
  console.log(`\n== Merkle (node ${process.version}, ${process.arch}, ${availableParallelism()} CPUs, N=${N.toLocaleString('en')}, depth 4 = 65,536 buckets)`);
  console.log(`   load average at start ${loadavg().map((l) => l.toFixed(1)).join(' ')} (other processes share the CPUs: times scale with it)`);
  console.log(`   method: wall clock by performance.now(), CPU time by process.cpuUsage(); memory by process.memoryUsage() before/after${hasGc ? ', after a forced gc' : ' (run with --expose-gc for a forced gc first)'}`);

  const made: MerkleEntry[] = new Array<MerkleEntry>(N);
  for (let i = 0; i < N; i++) made[i] = { key: `host.a1/inventory/package-${i}`, recordHash: fakeHash(i) };
  // Through JSON, as rows decoded from a database or the wire arrive: flat strings, not the
  // concatenation trees V8 builds for template literals (slower to hash on first use).
  const entries = JSON.parse(JSON.stringify(made)) as MerkleEntry[];
  made.length = 0;

  gc();
  const before = process.memoryUsage();
  const cpu0 = process.cpuUsage();
  let t = performance.now();
  const tree = MerkleTree.build(entries);
  const buildMs = performance.now() - t;
  const cpu = process.cpuUsage(cpu0);
  gc();
  const after = process.memoryUsage();
  console.log(`build            ${buildMs.toFixed(0)} ms for ${N.toLocaleString('en')} records (${((N / buildMs) * 1000).toFixed(0)} records/s), CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms (process.cpuUsage: user+system, GC threads included, less sensitive to load); MerkleTree.build over an array of {key, recordHash} made beforehand`);
  console.log(`memory           heapUsed +${mb(after.heapUsed - before.heapUsed)} (the tree; the key and hash strings are the caller's and not counted), RSS ${mb(after.rss)} for the whole process, arrayBuffers ${mb(after.arrayBuffers)}`);

  // A second, identical tree to diff against: built from the same entries, then edited.
  const other = MerkleTree.build(entries);

  t = performance.now();
  for (let i = 0; i < UPDATES; i++) tree.upsert(`host.a1/inventory/package-${(i * 7919) % N}`, fakeHash(N + i));
  void tree.root;
  const updMs = performance.now() - t;
  console.log(`upsert           ${((UPDATES / updMs) * 1000).toFixed(0)} updates/s: ${UPDATES.toLocaleString('en')} upserts of existing keys then one root read, ${updMs.toFixed(0)} ms (includes making the new record hash)`);

  t = performance.now();
  const single = 10_000;
  for (let i = 0; i < single; i++) {
    tree.upsert(`host.a1/inventory/package-${i}`, fakeHash(2 * N + i));
    void tree.root;
  }
  const singleMs = performance.now() - t;
  console.log(`upsert+root      ${((single / singleMs) * 1000).toFixed(0)} updates/s when the root is read after every update (rehash of the 4 inner nodes on the path each time)`);

  // Undo the edits so `tree` equals `other` again, then make exactly DIFFERENCES differences.
  const undo = MerkleTree.build(entries);
  for (const e of tree.entries()) if (undo.get(e.key) !== e.recordHash) tree.upsert(e.key, undo.get(e.key) as string);
  if (tree.root !== other.root) throw new Error('bench setup: trees should be equal');
  for (let i = 0; i < DIFFERENCES; i++) {
    const k = (i * 99_991) % N;
    if (i % 3 === 0) other.remove(`host.a1/inventory/package-${k}`);
    else if (i % 3 === 1) other.upsert(`host.a1/inventory/package-${k}`, fakeHash(3 * N + i));
    else other.upsert(`host.a1/inventory/new-package-${i}`, fakeHash(3 * N + i));
  }

  let bytes = 0;
  let messages = 0;
  const wire = <T>(m: T): T => {
    const s = JSON.stringify(m);
    bytes += Buffer.byteLength(s);
    messages++;
    return JSON.parse(s) as T;
  };
  t = performance.now();
  const start = startVerify(tree);
  let state = start.state;
  let request = wire<MerkleVerifyRequest>(start.request);
  let found = 0;
  let roundTrips = 0;
  for (;;) {
    const response = wire<MerkleVerifyResponse>(answerVerify(other, request));
    const step = stepVerify(state, response);
    if (step.done) {
      found = step.result.missingHere.length + step.result.missingThere.length + step.result.differing.length;
      roundTrips = step.roundTrips;
      break;
    }
    state = step.state;
    request = wire(step.request);
  }
  const diffMs = performance.now() - t;
  if (found !== DIFFERENCES) throw new Error(`diff found ${found} differences, expected ${DIFFERENCES}`);
  console.log(`diff             ${diffMs.toFixed(1)} ms to find ${DIFFERENCES} differences among ${N.toLocaleString('en')} records: startVerify/answerVerify/stepVerify in one process, each message through JSON.stringify/parse`);
  console.log(`wire             ${bytes.toLocaleString('en')} bytes in ${messages} messages, ${roundTrips} round trips (UTF-8 bytes of JSON.stringify of every request and response)`);
}
