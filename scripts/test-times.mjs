// Loaded into every test file's process (scripts/run-tests.mjs): when JUNIPER_TEST_TIMES names a file, appends
// this file's wall time (from process start to exit, module loading included), the CPU time of its own process
// and the CPU time of the processes it started and saw end (juniper CLI runs and workers, peers, browsers) to it,
// one "wall ms<TAB>cpu ms<TAB>children's cpu ms<TAB>path" line. The runner prints the slowest files from it at the
// end, which is what the suite's duration is made of. Without the children's CPU a file that runs `juniper`
// processes looks as if it only waited.
import { appendFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';

const times = process.env.JUNIPER_TEST_TIMES;

/** CPU ms of the ended children (and theirs) this process waited for: cutime + cstime of /proc/self/stat; -1 elsewhere. */
function childrenCpuMs() {
  try {
    // Fields after the command name (which may hold spaces, hence from the last ')'): cutime and cstime are the
    // 14th and 15th, in clock ticks of 1/100 s (USER_HZ on Linux).
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[13]) + Number(fields[14])) * 10;
  } catch {
    return -1;
  }
}

// Not in the worker threads a test file starts (they inherit --require): their process is the file's, counted once.
if (times && isMainThread && process.env.NODE_TEST_CONTEXT?.startsWith('child')) {
  process.on('exit', () => {
    const file = path.relative(process.cwd(), process.argv[1] ?? '?');
    // One short write with O_APPEND: the lines of files ending at the same time do not interleave.
    const cpu = process.cpuUsage();
    appendFileSync(times, `${Math.round(performance.now())}\t${Math.round((cpu.user + cpu.system) / 1000)}\t${childrenCpuMs()}\t${file}\n`);
  });
}
