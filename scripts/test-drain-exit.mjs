// Loaded into every test file's process (scripts/run-tests.mjs). With --test-force-exit, Node's runner calls
// process.exit as soon as a file's tests end, while the last test verdicts can still be on their way to the
// parent over the stdout pipe: the parent then reports fewer tests than ran (nodejs/node#64833; a lost failure
// still fails the run by the exit code, but its name and error vanish). So in a file's process the exit waits
// until the report has reached the pipe (at most 30 s, so a stuck pipe cannot hang the run; not much less: a
// report cut mid-message makes Node 20's parent loop forever, at full CPU).
//
// Waiting for stdout to take what was written before the exit is not enough: the report reaches stdout through
// a stream pipeline that pauses while the pipe is full (the parent reads slowly under load, or one verdict is
// large: a failing assertion carries its whole input), so more of the report is written only after stdout has
// drained. Hence the loop: exit only once stdout has flushed and a turn of the event loop later nothing new was
// written.
// The runner's own process (started with --test; it loads this through --require, which it passes on to the
// files' processes) force-exits the same way once every file has ended, its report going to its stdout.
// Not in worker threads (they inherit --require): a worker's process.exit ends only its thread, which must end at
// once (a parse worker that crashes is one: held here, it took up to 30 s to end).
import { isMainThread } from 'node:worker_threads';

if (isMainThread && (process.env.NODE_TEST_CONTEXT?.startsWith('child') || process.execArgv.includes('--test'))) {
  const exit = process.exit.bind(process);
  const out = process.stdout;
  let writes = 0;
  const write = out.write;
  out.write = function (...args) {
    writes++;
    return write.apply(this, args);
  };
  let exiting = false;
  process.exit = (code) => {
    if (code !== undefined) process.exitCode = code;
    if (exiting) return;
    exiting = true;
    setTimeout(() => exit(), 30_000);
    const settle = () => {
      const before = writes;
      // Flushed: every chunk written so far has been taken by the pipe (the empty write's callback comes last).
      write.call(out, '', () =>
        setImmediate(() => {
          if (writes === before && out.writableLength === 0) exit();
          else settle();
        }),
      );
    };
    setImmediate(settle);
  };
}
