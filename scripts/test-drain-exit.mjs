// Loaded into every test file's process (scripts/run-tests.mjs). With --test-force-exit, Node's runner calls
// process.exit as soon as a file's tests end, while the last test verdicts can still be on their way to the
// parent over the stdout pipe: the parent then reports fewer tests than ran (nodejs/node#64833; a lost failure
// still fails the run by the exit code, but its name and error vanish). So in a file's process the exit waits
// until stdout has taken everything written before it (at most 5 s, so a stuck pipe cannot hang the run).
if (process.env.NODE_TEST_CONTEXT?.startsWith('child')) {
  const exit = process.exit.bind(process);
  process.exit = (code) => {
    if (code !== undefined) process.exitCode = code;
    setTimeout(() => exit(), 5000);
    setImmediate(() => process.stdout.write('', () => exit()));
  };
}
