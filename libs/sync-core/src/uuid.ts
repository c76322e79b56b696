/**
 * Change ids: RFC 9562 UUIDv7 (48-bit millisecond timestamp, version 7, 74 random bits), lowercase,
 * as `libs/contracts` requires. The one implementation every package uses.
 *
 * Pure: the clock and the randomness are parameters (the core never calls `Date.now()` or a random
 * source itself); adapters pass their clock and `randomFillSync` from `node:crypto`.
 *
 * Not the `uuid` package: `uuid` 14 is ESM-only, which jest's CommonJS runtime cannot load, and it
 * asks the OS for 16 bytes per id (~20 µs per call on small VMs, a fifth of a local write). Here one
 * 16 KiB draw serves 1,024 ids and the formatting is table lookups.
 */

const POOL_IDS = 1024;
const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Writes random bytes into every position of `buf` (e.g. `randomFillSync` from `node:crypto`). */
export type FillRandom = (buf: Uint8Array) => void;

/** The UUIDv7 text of a millisecond timestamp and 16 bytes (of which bytes 6-15 supply the random bits). */
export function formatUuidV7(ms: number, bytes: Uint8Array, offset = 0): string {
  const t = Math.max(0, Math.floor(ms));
  if (!Number.isSafeInteger(t) || t >= 2 ** 48) throw new RangeError(`UUIDv7 timestamp out of range: ${ms}`);
  const h = (i: number): string => HEX[bytes[offset + i] as number] as string;
  const time = t.toString(16).padStart(12, '0');
  const ver = `7${(HEX[bytes[offset + 6] as number] as string)[1] as string}${h(7)}`;
  const variant = `${HEX[((bytes[offset + 8] as number) & 0x3f) | 0x80] as string}${h(9)}`;
  return `${time.slice(0, 8)}-${time.slice(8)}-${ver}-${variant}-${h(10)}${h(11)}${h(12)}${h(13)}${h(14)}${h(15)}`;
}

/**
 * A generator of UUIDv7 ids: `now()` gives the timestamp (epoch ms) of each id, `fillRandom` refills a
 * pool of random bytes every 1,024 ids.
 */
export function uuidV7Generator(now: () => number, fillRandom: FillRandom): () => string {
  const pool = new Uint8Array(16 * POOL_IDS);
  let next = POOL_IDS;
  return () => {
    if (next >= POOL_IDS) {
      fillRandom(pool);
      next = 0;
    }
    const o = next * 16;
    next += 1;
    return formatUuidV7(now(), pool, o);
  };
}
