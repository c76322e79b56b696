/** The pull decoder's worker thread (see pull-decoder.ts): one reply body in, its decoded page out. */
import { parentPort } from 'node:worker_threads';
import { answerDecode } from './pull-decoder';
import type { DecoderRequest } from './pull-decoder';

parentPort?.on('message', (req: DecoderRequest) => {
  parentPort?.postMessage(answerDecode(req));
});
