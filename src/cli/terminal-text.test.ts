import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { terminalText } from './terminal-text.js';

describe('terminalText', () => {
  it('writes out every control character a terminal obeys, and keeps tab, line feed, carriage return and other text', () => {
    assert.equal(terminalText('a\u001b]0;t\u0007\u001b[2J\u009b0m\u007f\u0000b'), String.raw`a\u001b]0;t\u0007\u001b[2J\u009b0m\u007f\u0000b`);
    assert.equal(terminalText('1\tRelay\r\nJane Döe ＠ 東京 \u00a0\n'), '1\tRelay\r\nJane Döe ＠ 東京 \u00a0\n');
  });

  it('keeps JSON valid: the escapes are JSON\'s, so the text reads back the same', () => {
    const value = { name: 'a\u001b[2J\u009b\u007f\\x' };
    assert.deepEqual(JSON.parse(terminalText(JSON.stringify(value))), value);
  });
});
