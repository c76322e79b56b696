import { FleetError } from '@fleet/errors';
import { retryPublish } from './retry';

const policy = { attempts: 4, baseMs: 100, maxMs: 250, jitter: 0 };

describe('retryPublish', () => {
  it('retries a retryable failure with capped backoff, calling the same publish each time', async () => {
    const waits: number[] = [];
    let calls = 0;
    const r = await retryPublish(
      async () => {
        if (++calls < 3) throw new FleetError('FLEET_INFRA_001', 'publish: TimeoutError');
        return 'ack';
      },
      policy,
      { sleep: async (ms) => void waits.push(ms) },
    );
    expect(r).toBe('ack');
    expect(calls).toBe(3);
    expect(waits).toEqual([100, 200]);
  });

  it('gives up after the last attempt with the last error', async () => {
    const waits: number[] = [];
    let calls = 0;
    await expect(
      retryPublish(
        async () => {
          calls++;
          throw new Error(`down ${calls}`);
        },
        policy,
        { sleep: async (ms) => void waits.push(ms) },
      ),
    ).rejects.toThrow('down 4');
    expect(waits).toEqual([100, 200, 250]);
  });

  it('does not retry a non-retryable FleetError', async () => {
    let calls = 0;
    await expect(
      retryPublish(async () => {
        calls++;
        throw new FleetError('FLEET_MSG_002', 'expected last sequence');
      }, policy),
    ).rejects.toThrow('expected last sequence');
    expect(calls).toBe(1);
  });
});
