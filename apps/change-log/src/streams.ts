import type { Subjects } from '@fleet/contracts';
import { fleetStreams } from '@fleet/messaging';
import type { ConsumerSpec, StreamSpec } from '@fleet/messaging';
import type { ChangeLogConfig } from './config';

/** The streams this service declares (provisioned by every replica at start, idempotently). */
export function changeLogStreams(s: Subjects, config: Pick<ChangeLogConfig, 'streamReplicas'>): StreamSpec[] {
  const all = fleetStreams(s, config.streamReplicas);
  return [all.push, all.log];
}

/** Every replica binds this durable consumer, so JetStream shares the push messages between them. */
export function pushConsumerSpec(s: Subjects, config: Pick<ChangeLogConfig, 'ackWait' | 'maxDeliver'>): ConsumerSpec {
  return {
    stream: s.streams.push,
    durable: `${s.ns}-change-log`,
    filterSubject: s.pushAll,
    description: 'change-log: append pushes',
    ackWaitMs: config.ackWait,
    maxDeliver: config.maxDeliver,
  };
}
