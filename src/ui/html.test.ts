import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { html, raw } from './html.js';

describe('html templates', () => {
  it('escapes interpolated text so user input cannot inject markup', () => {
    const name = '<script>alert("x")</script>&\'';
    assert.equal(html`<b>${name}</b>`.value, '<b>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;</b>');
  });
  it('keeps nested templates and arrays as markup, and drops null, undefined and false', () => {
    const items = ['a<', 'b'].map((x) => html`<li>${x}</li>`);
    assert.equal(html`<ul>${items}${null}${undefined}${false}${raw('<hr>')}</ul>`.value, '<ul><li>a&lt;</li><li>b</li><hr></ul>');
  });
});
