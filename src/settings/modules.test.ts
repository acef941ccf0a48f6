import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { matchModules, modules } from './modules.js';
import { uninstallRefusal } from './outlook-in-use.js';

describe('the Apps page search (matchModules)', () => {
  const names = (appsOnly: boolean, search: string) => matchModules(modules, { appsOnly, search }).map((m) => m.name);
  const cases: [boolean, string, string[]][] = [
    [true, '', ['juniper']],
    [true, 'Outlook', []],
    [false, 'Outlook', ['microsoft_outlook']],
    [false, 'outlook', ['microsoft_outlook']],
    [false, 'microsoft azure', ['microsoft_outlook']],
    [false, '', ['juniper', 'microsoft_outlook']],
    [false, 'fax', []],
  ];
  for (const [appsOnly, search, expected] of cases) {
    it(`${appsOnly ? 'with' : 'without'} the Apps filter, "${search}" finds [${expected.join(', ')}]`, () => {
      assert.deepEqual(names(appsOnly, search), expected);
    });
  }
});

describe('uninstalling Microsoft Outlook (uninstallRefusal)', () => {
  it('is allowed when no server uses Outlook', () => assert.equal(uninstallRefusal([]), null));
  it('names the servers that still use it', () => {
    assert.match(uninstallRefusal(['Notifications']) ?? '', /the server "Notifications": switch them off Outlook or archive them/);
    assert.match(uninstallRefusal(['a', 'b', 'c', 'd', 'e']) ?? '', /"a", "b", "c" and 2 more/);
  });
});
