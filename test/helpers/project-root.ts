// The checkout's root folder. Tests run from their compiled copies in dist-test/ (scripts/run-tests.mjs), where
// a path counted up from the file itself would land inside dist-test/: the root is the nearest folder above with
// a package.json (dist-test/ has none).
import fs from 'node:fs';
import path from 'node:path';

function rootAbove(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'package.json'))) return d;
    if (path.dirname(d) === d) throw new Error(`No package.json above ${dir}`);
  }
}

export const projectRoot = rootAbove(import.meta.dirname);

/** Node's arguments to run one of the project's TypeScript modules (a path from the root, without extension) as a
 * process: its compiled copy beside the running tests, or the source through tsx when the tests run from source. */
export function moduleArgs(fromUrl: string, rootPath: string): string[] {
  if (fromUrl.endsWith('.ts')) return ['--import', 'tsx', path.join(projectRoot, `${rootPath}.ts`)];
  return [path.join(projectRoot, 'dist-test', `${rootPath}.js`)];
}

/** A forked copy of the calling module needs tsx only when it runs from source. */
export function childExecArgv(fromUrl: string): string[] {
  return fromUrl.endsWith('.ts') ? ['--import', 'tsx'] : [];
}
