// Loaded into every test file's process (scripts/run-tests.mjs): when JUNIPER_TEST_TIMES names a file, appends
// this file's wall time (from process start to exit, module loading included) and the CPU time of its own process
// (not of the peers and processes it starts) to it, one "wall ms<TAB>cpu ms<TAB>path" line.
// The runner prints the slowest files from it at the end, which is what the suite's duration is made of.
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

const times = process.env.JUNIPER_TEST_TIMES;
if (times && process.env.NODE_TEST_CONTEXT?.startsWith('child')) {
  process.on('exit', () => {
    const file = path.relative(process.cwd(), process.argv[1] ?? '?');
    // One short write with O_APPEND: the lines of files ending at the same time do not interleave.
    const cpu = process.cpuUsage();
    appendFileSync(times, `${Math.round(performance.now())}\t${Math.round((cpu.user + cpu.system) / 1000)}\t${file}\n`);
  });
}
