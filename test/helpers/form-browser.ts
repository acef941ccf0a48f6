// A browser without JavaScript for page tests over inject(): keeps cookies, reads the CSRF field from the
// last page, posts urlencoded forms and follows a same-site 303 as a browser would.
import assert from 'node:assert/strict';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';

export class FormBrowser {
  private cookies = new Map<string, string>();
  /** What a reload repeats: the last page's request (a POST answered with a page is posted again, as a browser does). */
  private last: { method: 'GET' | 'POST'; url: string; payload?: string } | null = null;
  csrf = '';
  constructor(private readonly http: FastifyInstance) {}

  private remember(res: LightMyRequestResponse): void {
    for (const c of res.cookies as { name: string; value: string; maxAge?: number; expires?: Date }[]) {
      const expired = c.maxAge === 0 || (c.expires !== undefined && c.expires.getTime() <= Date.now()) || c.value === '';
      if (expired) this.cookies.delete(c.name);
      else this.cookies.set(c.name, c.value);
    }
    const m = /name="_csrf" value="([^"]+)"/.exec(res.body);
    if (m?.[1]) this.csrf = m[1];
  }

  cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('; ');
  }

  async get(url: string): Promise<LightMyRequestResponse> {
    this.last = { method: 'GET', url };
    const res = await this.http.inject({ method: 'GET', url, headers: { accept: 'text/html', cookie: this.cookieHeader() } });
    this.remember(res);
    return res;
  }

  /** Posts a form; `csrf: false` leaves the hidden field out, as a forged cross-site form would. */
  async post(url: string, fields: Record<string, string>, options: { csrf?: boolean; follow?: boolean } = {}): Promise<LightMyRequestResponse> {
    const body = new URLSearchParams(options.csrf === false ? fields : { _csrf: this.csrf, ...fields }).toString();
    const res = await this.http.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: this.cookieHeader(), accept: 'text/html' },
      payload: body,
    });
    this.remember(res);
    this.last = { method: 'POST', url, payload: body };
    if (options.follow !== false && res.statusCode === 303 && typeof res.headers.location === 'string' && res.headers.location.startsWith('/')) {
      return this.get(res.headers.location);
    }
    return res;
  }

  /** The browser's reload button, confirming "resubmit the form?" when the page was a POST's answer. */
  async reload(): Promise<LightMyRequestResponse> {
    assert.ok(this.last, 'nothing to reload');
    const { method, url, payload } = this.last;
    if (method === 'GET') return this.get(url);
    const res = await this.http.inject({
      method,
      url,
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: this.cookieHeader(), accept: 'text/html' },
      payload,
    });
    this.remember(res);
    if (res.statusCode === 303 && typeof res.headers.location === 'string' && res.headers.location.startsWith('/')) return this.get(res.headers.location);
    return res;
  }

  async signIn(login: string, password: string): Promise<void> {
    const res = await this.post('/login', { login, password, next: '/' }, { csrf: false });
    assert.equal(res.statusCode, 200, res.body);
  }
}
