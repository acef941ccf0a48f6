// What users write never reaches an admin's terminal as control characters: a user's outgoing and incoming
// server names and API key name are printed by `juniper servers list`, `juniper incoming list` and `juniper
// api-keys list` with ESC, BEL and the other controls written out as `\u001b` (hostile review 16: a user's server
// name set the window title, cleared the screen and printed a forged line in the admin's terminal). Such names
// are refused at input now (src/lib/plain-text.ts), line breaks too, which the output guard must let through for
// the CLI's own lines; the rows below are written directly, as a database from before the refusal holds them.
// (A mail server's reply is stored with its controls as spaces already.) Real CLI processes, both databases.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startTestApp } from '../helpers/app.js';
import { cliEnv, runJuniper } from '../helpers/cli.js';
import { dialects } from '../helpers/databases.js';

// Sets the window title, clears the screen, then prints a forged line in red.
const HOSTILE = 'Jane\u001b]0;owned\u0007\u001b[2J\u001b[31mdoctor: all OK\u009b0m';
const SHOWN = String.raw`Jane\u001b]0;owned\u0007\u001b[2J\u001b[31mdoctor: all OK\u009b0m`;

for (const dialect of dialects) {
  describe(`the CLI prints no control character of users or peers (${dialect})`, () => {
    it('refuses them (and line breaks) in names at input, and writes out those an older database holds in servers list, incoming list and api-keys list', async () => {
      // A public address for the user's server (it is never connected to: it is inactive).
      const t = await startTestApp(dialect, {}, { resolveHost: async () => ['93.184.216.34'] });
      try {
        const http = await t.app.http();
        const jane = await t.createUser('jane', 'user');
        const as = (key: string, url: string, payload: object) => http.inject({ method: 'POST', url, payload, headers: { authorization: `Bearer ${key}` } });
        const outgoing = { host: 'smtp.example.net', port: 587, security: 'starttls', auth: 'none', fromFilter: 'jane@example.com', active: false };
        const incomingBody = { protocol: 'imap', host: 'imap.example.net', port: 993, security: 'ssl', auth: 'password', username: 'jane@example.com', password: 'pw', active: false };
        // Refused at input, with a line break (a forged row of a tab-separated list) as with ESC.
        for (const name of [HOSTILE, 'mine\n99\tadmin-smtp\tsmtp.corp:587', 'mine\roverwritten']) {
          for (const [url, body] of [['/api/v1/outgoing-servers', outgoing], ['/api/v1/incoming-servers', incomingBody], ['/api/v1/api-keys', {}]] as const) {
            const refused = await as(jane.apiKey, url, { ...body, name });
            assert.equal(refused.statusCode, 400, `${url} ${JSON.stringify(name)}: ${refused.body}`);
            assert.match(refused.body, /may not contain line breaks, tabs or other control characters/);
          }
        }
        const personal = await as(jane.apiKey, '/api/v1/outgoing-servers', { ...outgoing, name: 'Jane' });
        assert.equal(personal.statusCode, 201, personal.body);
        assert.equal((await as(jane.apiKey, '/api/v1/api-keys', { name: 'Jane' })).statusCode, 201);
        const incoming = await as(jane.apiKey, '/api/v1/incoming-servers', { ...incomingBody, name: 'Jane' });
        assert.equal(incoming.statusCode, 201, incoming.body);
        const { db: kysely } = t.app.database;
        await kysely.updateTable('outgoing_servers').set({ name: HOSTILE }).where('name', '=', 'Jane').execute();
        await kysely.updateTable('incoming_servers').set({ name: HOSTILE }).where('name', '=', 'Jane').execute();
        await kysely.updateTable('api_keys').set({ name: HOSTILE }).where('name', '=', 'Jane').execute();

        const db = t.config.database;
        const env = cliEnv(t.config.dataDir, db.kind === 'postgres' ? db.url : `sqlite:${db.file}`);
        for (const args of [['servers', 'list'], ['incoming', 'list'], ['api-keys', 'list']]) {
          const r = runJuniper(env, args);
          assert.equal(r.code, 0, r.stderr);
          // eslint-disable-next-line no-control-regex -- the characters that must not be printed
          assert.doesNotMatch(r.stdout, /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/, `juniper ${args.join(' ')} printed a control character: ${JSON.stringify(r.stdout)}`);
          assert.ok(r.stdout.includes(SHOWN), `juniper ${args.join(' ')} shows the text written out: ${JSON.stringify(r.stdout)}`);
        }
        // --json stays JSON and reads back the name as it was given.
        const json = runJuniper(env, ['servers', 'list', '--json']);
        assert.equal(json.code, 0, json.stderr);
        // eslint-disable-next-line no-control-regex -- the characters that must not be printed
        assert.doesNotMatch(json.stdout, /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/);
        assert.equal((JSON.parse(json.stdout) as { name: string }[])[0]!.name, HOSTILE);
      } finally {
        await t.close();
      }
    });
  });
}
