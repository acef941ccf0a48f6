// How a fetch stopped on purpose (the process shutting down, `juniper fetch` interrupted, a fetch job stopped)
// ends: the IMAP reader ends the step in progress with it, closing the connection as a step's deadline does, and
// refuses to start another; the fetcher stops with it between steps. It is nobody's failure: the fetcher records it
// neither on the server (lastError, errorSince) nor against a message (a FETCH's note), and resolves with its counts.
import { AppError } from '../lib/errors.js';

export class FetchStopped extends AppError {
  constructor() {
    // details.stopped as on a fetch job stopped short (fetch-jobs.ts isStopped): the same event, seen from the job.
    super('JUNIPER_ERR_CONFLICT', 'The fetch was stopped (Juniper is stopping, or the fetch was interrupted): what it stored stays stored, and the next fetch goes on after it.', { details: { stopped: true } });
    this.name = 'FetchStopped';
  }
}

export const isFetchStopped = (err: unknown): err is FetchStopped => err instanceof FetchStopped;
