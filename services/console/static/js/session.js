// The signed-in principal: a bearer token taken from the URL fragment (#token=…), which
// browsers never send to the server, kept in sessionStorage for this tab's session only.
const KEY = 'civic.console.token';

function decodePart(part) {
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
}

/** Claims for display only: the server verifies the token on every request. */
export function claimsOf(token) {
  try {
    const claims = decodePart(token.split('.')[1]);
    return typeof claims === 'object' && claims ? claims : null;
  } catch {
    return null;
  }
}

/** Reads #token=… once, stores it and removes it from the address bar and history. */
export function takeTokenFromFragment() {
  const hash = window.location.hash.slice(1);
  const params = new URLSearchParams(hash);
  const token = params.get('token');
  if (!token) return false;
  sessionStorage.setItem(KEY, token);
  history.replaceState(null, '', window.location.pathname + window.location.search + '#/');
  return true;
}

export function storeToken(token) {
  sessionStorage.setItem(KEY, token.trim());
}

export function currentSession() {
  const token = sessionStorage.getItem(KEY);
  if (!token) return null;
  const claims = claimsOf(token);
  if (!claims || typeof claims.scope !== 'string') return null;
  if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) {
    sessionStorage.removeItem(KEY);
    return null;
  }
  const roles = Array.isArray(claims.roles) ? claims.roles : [];
  return {
    token,
    scope: claims.scope,
    subject: String(claims.sub ?? ''),
    roles,
    expires: typeof claims.exp === 'number' ? new Date(claims.exp * 1000) : null,
    has: (...wanted) => wanted.some((r) => roles.includes(r)),
  };
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}
