import { AppError } from '../lib/errors.js';

/** A positive id from the command line, or an error saying which command lists the valid ones. */
export function idArgument(value: string, listCommand: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new AppError('JUNIPER_ERR_VALIDATION', `${JSON.stringify(value)} is not a server id (see \`${listCommand}\`).`);
  return n;
}
