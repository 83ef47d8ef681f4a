// The JSON API with the session's bearer token. Errors are RFC 9457 problems; their
// detail (and field messages) are shown to the user as the API words them.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problemText(status, problem));
    this.status = status;
    this.problem = problem;
  }
}

function problemText(status, problem) {
  if (!problem || typeof problem !== 'object') return `请求失败（HTTP ${status}）`;
  const parts = [problem.detail || problem.title || `HTTP ${status}`];
  if (Array.isArray(problem.errors)) {
    for (const e of problem.errors) {
      if (e && e.message && !parts[0].includes(e.message)) parts.push(`${e.field ? e.field + '：' : ''}${e.message}`);
    }
  }
  return parts.join('；');
}

// crypto.randomUUID needs a secure context; an intranet deployment may serve plain http.
function requestId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export function createApi(session, onUnauthorized) {
  async function request(path, { method = 'GET', body, headers = {}, ifMatch, accept } = {}) {
    const h = {
      Authorization: `Bearer ${session.token}`,
      'Accept-Language': 'zh-CN',
      Accept: accept || 'application/json',
      ...headers,
    };
    if (body !== undefined) h['Content-Type'] = 'application/json';
    if (method === 'POST') h['Idempotency-Key'] = requestId();
    if (ifMatch !== undefined && ifMatch !== null) h['If-Match'] = `"${ifMatch}"`;
    let response;
    try {
      response = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(0, { detail: '无法连接服务器，请检查网络后重试' });
    }
    if (!response.ok) {
      let problem = null;
      try { problem = await response.json(); } catch { /* not JSON */ }
      const error = new ApiError(response.status, problem);
      if (response.status === 401) {
        // the sign-in page replaces everything: nothing else should report this one
        error.signedOut = true;
        onUnauthorized(error);
      }
      throw error;
    }
    return response;
  }
  return {
    request,
    async get(path) { return (await request(path)).json(); },
    async post(path, body, ifMatch) { return (await request(path, { method: 'POST', body: body ?? {}, ifMatch })).json(); },
    /** Downloads a file the API answers (bearer auth, so no plain link). */
    async download(path, filename, accept) {
      const blob = await (await request(path, { accept: accept || '*/*' })).blob();
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = filename;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
    },
  };
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
