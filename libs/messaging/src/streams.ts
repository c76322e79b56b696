import type { Subjects } from '@fleet/contracts';
import type { StreamSpec } from './provision';

/**
 * Every stream of the deployment, declared once. Each service provisions the ones it publishes to
 * or consumes from; several services declare the same stream, so they must declare it identically,
 * or each start would "update" the stream back to its own version.
 */
export function fleetStreams(s: Subjects, replicas: number) {
  return {
    push: { name: s.streams.push, subjects: [s.pushAll], description: 'push batches from agents', replicas },
    log: { name: s.streams.log, subjects: [s.appended], description: 'changes appended to the change log', replicas },
    vv: {
      name: s.streams.vv,
      subjects: [s.classifiedAll],
      description: 'version-vector: applied records, stale/duplicate changes, detected conflicts',
      replicas,
      maxAgeMs: 7 * 24 * 3600 * 1000,
    },
    conflicts: {
      name: s.streams.conflicts,
      subjects: [s.resolved],
      description: 'conflict-resolver: what became of each detected conflict',
      replicas,
      maxAgeMs: 30 * 24 * 3600 * 1000,
    },
  } as const satisfies Record<string, StreamSpec>;
}
