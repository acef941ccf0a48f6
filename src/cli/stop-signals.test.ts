import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { onFirstStopSignal, signalExitCode } from './stop-signals.js';

describe('onFirstStopSignal: the first SIGINT or SIGTERM stops cleanly, a second one is left to Node', () => {
  const counts = () => [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')];

  for (const [first, second] of [['SIGINT', 'SIGTERM'], ['SIGTERM', 'SIGINT'], ['SIGINT', 'SIGINT']] as const) {
    it(`hands ${first} over once and leaves no listener for a later ${second}`, () => {
      const before = counts();
      const heard: string[] = [];
      const remove = onFirstStopSignal((sig) => heard.push(sig));
      assert.deepEqual(counts(), [before[0]! + 1, before[1]! + 1]);
      process.emit(first, first);
      assert.deepEqual(heard, [first]);
      assert.deepEqual(counts(), before, `no listener of ours is left for ${second}: it ends the process at once`);
      remove();
      assert.deepEqual(counts(), before);
    });
  }

  it('removes both listeners when the command ends before any signal', () => {
    const before = counts();
    onFirstStopSignal(() => assert.fail('no signal came'))();
    assert.deepEqual(counts(), before);
  });

  it('exits as shells report a process stopped by the signal', () => {
    assert.equal(signalExitCode('SIGINT'), 130);
    assert.equal(signalExitCode('SIGTERM'), 143);
  });
});
