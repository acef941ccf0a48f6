// The logger's redaction list and request ids: a secret under any field name it may travel by is replaced
// before the line is written, at the top level, one level down and in request headers.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger, requestIdOf } from './logger.js';

function capture() {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString();
      done();
    },
  });
  return { log: createLogger('info', sink), text: () => out };
}

describe('logger', () => {
  it('redacts passwords, client secrets, tokens, API keys and webhook secrets, and the auth headers', () => {
    const { log, text } = capture();
    const secrets = ['pw-123-hunter2', 'cs~client-secret', 'eyJ.access', 'rt-refresh', 'jnp_abcdefgh_key', 'whsec_webhook-secret', 'Bearer jnp_header', 'juniper_session=cookie'];
    log.info({ password: secrets[0], clientSecret: secrets[1], accessToken: secrets[2], refresh_token: secrets[3], apiKey: secrets[4], secret: secrets[5] }, 'top level');
    log.info({ server: { password: secrets[0], token: secrets[2] }, webhook: { secret: secrets[5] } }, 'one level down');
    log.info({ req: { headers: { authorization: secrets[6], cookie: secrets[7] } } }, 'request');
    for (const s of secrets) assert.ok(!text().includes(s), `${s} reached the log`);
    assert.equal(text().match(/\[redacted\]/g)?.length, 11);
  });

  it('keeps a plain x-request-id and replaces anything else with a random id', () => {
    assert.equal(requestIdOf('proxy-7f3a.1:2'), 'proxy-7f3a.1:2');
    assert.equal(requestIdOf(['first', 'second']), 'first');
    for (const bad of [undefined, '', 'has space', 'line\nbreak', 'x'.repeat(65), '{"json":1}']) assert.match(requestIdOf(bad), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, String(bad));
  });
});
