// Ctrl-C and a service manager's SIGTERM, for a command that stops cleanly: the first of either is caught and
// handed to `onStop`, and both listeners go at once, so a second signal of either kind gets Node's default
// (the process ends at once) instead of being handled again.

export type StopSignal = 'SIGINT' | 'SIGTERM';

/** The exit code of a process stopped by a signal, as shells report it (130 for SIGINT, 143 for SIGTERM). */
export const signalExitCode = (sig: StopSignal) => 128 + (sig === 'SIGINT' ? 2 : 15);

/** Catches the first SIGINT or SIGTERM only; returns what removes the listeners (when the command ends first). */
export function onFirstStopSignal(onStop: (sig: StopSignal) => void): () => void {
  const remove = () => {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  };
  function onSignal(sig: NodeJS.Signals) {
    remove();
    onStop(sig as StopSignal);
  }
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return remove;
}
