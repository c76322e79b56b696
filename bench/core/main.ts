/**
 * The core benchmark: `node -r ./scripts/register.js bench/core/main.ts` from the repository root.
 * Pure-library figures only (no NATS, no database): Merkle trees, then conflict resolution.
 * Add --expose-gc (`node --expose-gc -r ./scripts/register.js bench/core/main.ts`) for memory
 * figures taken after a forced collection.
 */
import { runMerkleBench } from './merkle';
import { runResolveBench } from './resolve';

async function main(): Promise<void> {
  console.log(`core benchmark: node ${process.version} on ${process.platform}/${process.arch}`);
  await runMerkleBench();
  await runResolveBench();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
