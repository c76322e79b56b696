/**
 * TEST-ONLY: a parent process that starts a change-log child (as the harnesses do), prints the child's
 * pid and waits to be killed. `change-log.process.int.spec.ts` SIGKILLs it and checks the child exits.
 * Argument: the JSON of a `ServiceEnv`.
 */
import { ServiceProcess } from './service-process';
import type { ServiceEnv } from './service-process';

async function main(): Promise<void> {
  const env = JSON.parse(process.argv[2] ?? '{}') as ServiceEnv;
  const child = await ServiceProcess.start('orphan-child', env);
  process.stdout.write(`child ${String(child.pid)}\n`);
  setInterval(() => undefined, 60_000);
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
