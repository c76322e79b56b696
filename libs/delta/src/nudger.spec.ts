import { encodeJson, subjects } from '@fleet/contracts';
import { testChange } from '@fleet/server-store/src/testing/changes';
import { Nudger } from './nudger';

const s = subjects('t');
const event = (scope: string, seq: number) => encodeJson({ protocol: 1, changes: [{ ...testChange('server', seq, { scope }), seq }] });

describe('Nudger (a throttle with a leading edge)', () => {
  // jest's fake timers move Date.now with the timers they fire
  const t = () => Date.now() - start;
  let start = 0;
  const sent: { at: number; subject: string }[] = [];
  const make = () =>
    new Nudger(
      async (scopes) => (scopes.includes('fleet') ? ['a1', 'a2'] : scopes.map((sc) => sc.replace('host.', ''))),
      { publishCore: (subject) => void sent.push({ at: t(), subject }) },
      s,
      75,
      (e) => {
        throw e;
      },
      () => Date.now(),
    );
  const advance = (ms: number) => jest.advanceTimersByTimeAsync(ms);

  beforeEach(() => {
    jest.useFakeTimers({ now: 1_000_000 });
    start = Date.now();
    sent.length = 0;
  });
  afterEach(() => jest.useRealTimers());

  it('nudges at once after a quiet window: a lone change does not wait for the window', async () => {
    const n = make();
    n.onAppended(event('host.a7', 1));
    await advance(0);
    expect(sent).toEqual([{ at: 0, subject: s.notify('a7') }]);
    await n.stop();
  });

  it('a burst is one leading nudge and one trailing nudge per agent, never closer than the window', async () => {
    const n = make();
    for (let i = 0; i < 100; i++) {
      n.onAppended(event('fleet', i + 1));
      await advance(1);
    }
    await advance(200);
    const a1 = sent.filter((x) => x.subject === s.notify('a1')).map((x) => x.at);
    // events at 0..99: flushes at 0 (leading), 75 (gathered 1..74), 150 (75..99)
    expect(a1).toEqual([0, 75, 150]);
    expect(sent.filter((x) => x.subject === s.notify('a2'))).toHaveLength(3);
    await n.stop();
  });

  it('a change after the window has passed is nudged at once again', async () => {
    const n = make();
    n.onAppended(event('host.a1', 1));
    await advance(100);
    n.onAppended(event('host.a1', 2));
    await advance(0);
    expect(sent.map((x) => x.at)).toEqual([0, 100]);
    await n.stop();
  });

  it('stop flushes what is gathered; an undecodable event is reported, not nudged', async () => {
    const errors: unknown[] = [];
    const n = new Nudger(async (sc) => sc.map((x) => x.replace('host.', '')), { publishCore: (subject) => void sent.push({ at: t(), subject }) }, s, 75, (e) => void errors.push(e), () => Date.now());
    n.onAppended(event('host.a1', 1));
    n.onAppended(event('host.a2', 2));
    n.onAppended(new TextEncoder().encode('{"nope":'));
    await n.stop();
    expect(sent.map((x) => x.subject)).toEqual([s.notify('a1'), s.notify('a2')]);
    expect(errors).toHaveLength(1);
  });

  it('the window runs from when the nudges went out: a slow subscriber lookup does not squeeze the next nudge closer', async () => {
    let slow = true;
    const n = new Nudger(
      async (sc) => {
        if (slow) {
          slow = false;
          await new Promise((r) => setTimeout(r, 40));
        }
        return sc.map((x) => x.replace('host.', ''));
      },
      { publishCore: (subject) => void sent.push({ at: t(), subject }) },
      s,
      75,
      undefined,
      () => Date.now(),
    );
    n.onAppended(event('host.a1', 1));
    await advance(10);
    n.onAppended(event('host.a1', 2));
    await advance(300);
    expect(sent.map((x) => x.at)).toEqual([40, 115]);
    await n.stop();
  });
});
