import { connect } from 'node:net';

/** A raw HTTP client for the tests of oversize bodies: it keeps writing after the answer, as curl does. */

/** Whether `reply` holds a whole HTTP response (Content-Length or chunked). */
function wholeResponse(reply: string): boolean {
  const end = reply.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const length = /\r\ncontent-length: (\d+)\r\n/i.exec(reply.slice(0, end + 2));
  if (length) return reply.length - end - 4 >= Number(length[1]);
  return reply.endsWith('0\r\n\r\n');
}

/**
 * Sends `total` bytes of body on a raw socket after `head`, then waits for a whole answer (or the
 * server's close); resolves with everything read back and any socket error (a reset).
 */
export function sendBodyRaw(port: number, head: string, total: number, opts: { chunked?: boolean } = {}): Promise<{ reply: string; error: string | null; sent: number }> {
  return new Promise((resolve) => {
    // Half-open allowed: like curl, the client keeps writing its body after the answer came.
    const sock = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let reply = '';
    let error: string | null = null;
    let sent = 0;
    sock.on('data', (d) => (reply += d.toString('latin1')));
    sock.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    sock.on('close', () => resolve({ reply, error, sent }));
    sock.on('connect', () => {
      void (async () => {
        sock.write(head);
        // The head arrives before the body, as over any real link: the server answers first.
        await new Promise((r) => setTimeout(r, 100));
        const piece = Buffer.alloc(64 * 1024, 97);
        while (sent < total && !sock.destroyed) {
          const n = Math.min(piece.length, total - sent);
          const data = opts.chunked ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), piece.subarray(0, n), Buffer.from('\r\n')]) : piece.subarray(0, n);
          sent += n;
          if (!sock.write(data)) await new Promise((r) => sock.once('drain', r));
          // Past the cap, the answer is under way before the rest is written.
          if (sent === 128 * 1024) await new Promise((r) => setTimeout(r, 100));
        }
        if (opts.chunked && !sock.destroyed) sock.write('0\r\n\r\n');
        // Done writing: wait for the whole answer, then hang up as the server asked.
        const deadline = Date.now() + 10_000;
        while (!sock.destroyed && !wholeResponse(reply) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        sock.destroy();
      })();
    });
  });
}
