// Follows GET /v1/feed as Server-Sent Events. EventSource cannot send an Authorization
// header (and a token in the URL would end up in logs), so this reads the stream with
// fetch() and parses it. Reconnects with Last-Event-ID; stops on 401/403.
export function followFeed(session, { onEvent, onState }) {
  const controller = new AbortController();
  let lastId = null;
  let stopped = false;

  async function connect() {
    const headers = { Authorization: `Bearer ${session.token}`, Accept: 'text/event-stream' };
    if (lastId !== null) headers['Last-Event-ID'] = String(lastId);
    const url = lastId === null ? '/v1/feed?tail=true' : '/v1/feed';
    const response = await fetch(url, { headers, signal: controller.signal });
    if (response.status === 401 || response.status === 403) {
      stopped = true;
      onState('denied');
      return;
    }
    if (!response.ok || !response.body) throw new Error(`feed ${response.status}`);
    onState('on');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      // SSE lines may end in \r\n, \r or \n (Litestar sends \r\n); a \r at the end of a
      // chunk waits for the next one, which may start with its \n.
      buffer += value;
      const held = buffer.endsWith('\r') ? '\r' : '';
      let text = (held ? buffer.slice(0, -1) : buffer).replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = text.indexOf('\n\n')) >= 0) {
        const block = text.slice(0, cut);
        text = text.slice(cut + 2);
        let id = null;
        let type = null;
        for (const line of block.split('\n')) {
          if (line.startsWith('id:')) id = Number(line.slice(3).trim());
          else if (line.startsWith('event:')) type = line.slice(6).trim();
        }
        if (id !== null && Number.isFinite(id)) {
          lastId = id;
          onEvent({ position: id, type });
        }
      }
      buffer = text + held;
    }
  }

  (async () => {
    let delay = 1000;
    while (!stopped) {
      try {
        await connect();
        delay = 1000;
      } catch (err) {
        if (controller.signal.aborted) return;
        onState('off');
        delay = Math.min(delay * 2, 30000);
      }
      if (stopped || controller.signal.aborted) return;
      await new Promise((r) => setTimeout(r, delay));
    }
  })();

  return () => { stopped = true; controller.abort(); };
}
