/** A small HTTP client for the /api/v1 contract (API.md), as a script would use it. */
export interface ApiReply<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

export class Api {
  token: string | undefined;
  constructor(readonly base: string) {}

  async call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiReply<T>> {
    const h: Record<string, string> = { ...headers };
    if (this.token) h.authorization = `Bearer ${this.token}`;
    let payload: FormData | string | undefined;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) {
      h['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const res = await fetch(`${this.base}${path}`, { method, headers: h, body: payload, redirect: 'manual' });
    const text = res.status === 204 ? '' : Buffer.from(await res.arrayBuffer()).toString('utf8');
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  async register(username: string, password: string): Promise<ApiReply> {
    return this.call('POST', '/api/v1/users', { username, password });
  }

  async signIn(username: string, password: string): Promise<ApiReply<{ token: string }>> {
    const r = await this.call<{ token: string }>('POST', '/api/v1/sessions', { username, password });
    if (r.status === 200) this.token = r.body.token;
    return r;
  }

  async upload(files: { name: string; bytes: Uint8Array; type?: string }[]): Promise<ApiReply<any>> {
    const form = new FormData();
    for (const f of files) form.append('file', new Blob([f.bytes], { type: f.type ?? 'application/octet-stream' }), f.name);
    return this.call('POST', '/api/v1/files', form);
  }

  async download(id: string): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
    const res = await fetch(`${this.base}/api/v1/files/${id}/content`, { headers: this.token ? { authorization: `Bearer ${this.token}` } : {} });
    return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), headers: res.headers };
  }
}
