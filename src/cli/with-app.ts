import type { App } from '../app.js';

/** Opens the app (database, vault, services), runs one command against it, and closes it. */
export type WithApp = <T>(fn: (app: App) => Promise<T>) => Promise<T>;
