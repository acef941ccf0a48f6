// A loopback IMAP server (plain TCP, no TLS) that behaves well up to LOGIN and then as chosen: answers SELECT
// normally, trickles untagged "* OK" lines after SELECT forever (busy socket, no answer), answers SELECT with a
// huge literal, or has a given list of unseen UIDs. What a user's own hostile or broken server can do.
import net from 'node:net';

export type SelectMode = 'normal' | 'trickle' | 'literal';

export interface HostileImap {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** What the next SELECT does. */
  select: SelectMode;
  /** Interval of the "* OK" lines in trickle mode. */
  trickleMs: number;
  /**
   * What UID FETCH does: answer with the message (a few bytes), trickle "* OK" lines and never finish, or send a
   * message of `slowBytes` in 64 KB pieces every `trickleMs` (a slow but working link).
   */
  fetch: 'normal' | 'trickle' | 'slow';
  slowBytes: number;
  /** The UIDs SEARCH UNSEEN answers with (in this order). */
  unseen: number[];
  /** Literal bytes written after SELECT in literal mode, over every connection. */
  readonly literalBytesWritten: number;
  /** Connections closed by the client (or otherwise ended). */
  readonly closed: number;
  readonly selects: number;
  stop(): Promise<void>;
}

/** `literalSize` is announced in literal mode; `literalSend` is how much of it is written at most. */
export async function startHostileImap(options: { literalSize?: number; literalSend?: number } = {}): Promise<HostileImap> {
  const literalSize = options.literalSize ?? 1000 * 1024 * 1024;
  const literalSend = options.literalSend ?? 64 * 1024 * 1024;
  const sockets = new Set<net.Socket>();
  const state = { literalBytesWritten: 0, closed: 0, selects: 0 };
  const peer = {
    select: 'normal' as SelectMode,
    trickleMs: 200,
    fetch: 'normal' as 'normal' | 'trickle' | 'slow',
    slowBytes: 0,
    unseen: [] as number[],
  };
  const server = net.createServer((s) => {
    sockets.add(s);
    const timers: NodeJS.Timeout[] = [];
    s.on('close', () => {
      sockets.delete(s);
      state.closed++;
      for (const t of timers) clearInterval(t);
    });
    s.on('error', () => undefined);
    s.write('* OK IMAP4rev1 hostile ready\r\n');
    let buf = '';
    // The SELECT is never answered: the literal announced is far larger than what is sent of it.
    const streamLiteral = () => {
      s.write(`* FLAGS (\\Seen)\r\n* OK [PERMANENTFLAGS {${literalSize}}\r\n`);
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const pump = () => {
        while (state.literalBytesWritten < literalSend && !s.destroyed) {
          state.literalBytesWritten += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
      };
      pump();
    };
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let i;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const [tag = '*', cmd = '', ...rest] = line.split(' ');
        const verb = cmd.toUpperCase();
        if (verb === 'CAPABILITY') s.write(`* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n${tag} OK done\r\n`);
        else if (verb === 'LOGIN') s.write(`${tag} OK logged in\r\n`);
        else if (verb === 'LOGOUT') s.end(`* BYE bye\r\n${tag} OK logout\r\n`);
        else if (verb === 'SELECT' || verb === 'EXAMINE') {
          state.selects++;
          if (peer.select === 'trickle') timers.push(setInterval(() => s.write('* OK still thinking\r\n'), peer.trickleMs));
          else if (peer.select === 'literal') streamLiteral();
          else {
            const exists = peer.unseen.length;
            let max = 0;
            for (const u of peer.unseen) if (u > max) max = u;
            s.write(`* ${exists} EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT ${max + 1}] ok\r\n${tag} OK [READ-WRITE] SELECT done\r\n`);
          }
        } else if (verb === 'UID' && rest[0]?.toUpperCase() === 'FETCH') {
          const uid = Number.parseInt(rest[1] ?? '1', 10);
          const body = `Subject: ${uid}\r\n\r\nbody\r\n`;
          if (peer.fetch === 'trickle') timers.push(setInterval(() => s.write('* OK still fetching\r\n'), peer.trickleMs));
          else if (peer.fetch === 'slow') {
            const slow = Buffer.concat([Buffer.from(`Subject: ${uid}\r\n\r\n`), Buffer.alloc(peer.slowBytes, 'a')]);
            s.write(`* 1 FETCH (UID ${uid} BODY[] {${slow.length}}\r\n`);
            let at = 0;
            const piece = setInterval(() => {
              s.write(slow.subarray(at, at + 64 * 1024));
              at += 64 * 1024;
              if (at >= slow.length) {
                clearInterval(piece);
                s.write(`)\r\n${tag} OK fetch done\r\n`);
              }
            }, peer.trickleMs);
            timers.push(piece);
          } else s.write(`* 1 FETCH (UID ${uid} BODY[] {${body.length}}\r\n${body})\r\n${tag} OK fetch done\r\n`);
        } else if (verb === 'UID' && rest[0]?.toUpperCase() === 'SEARCH') s.write(`* SEARCH ${peer.unseen.join(' ')}\r\n${tag} OK search done\r\n`);
        else s.write(`${tag} OK\r\n`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: '127.0.0.1' as const,
    port,
    get select() {
      return peer.select;
    },
    set select(mode: SelectMode) {
      peer.select = mode;
    },
    get trickleMs() {
      return peer.trickleMs;
    },
    set trickleMs(ms: number) {
      peer.trickleMs = ms;
    },
    get slowBytes() {
      return peer.slowBytes;
    },
    set slowBytes(n: number) {
      peer.slowBytes = n;
    },
    get fetch() {
      return peer.fetch;
    },
    set fetch(mode: 'normal' | 'trickle' | 'slow') {
      peer.fetch = mode;
    },
    get unseen() {
      return peer.unseen;
    },
    set unseen(uids: number[]) {
      peer.unseen = uids;
    },
    get literalBytesWritten() {
      return state.literalBytesWritten;
    },
    get closed() {
      return state.closed;
    },
    get selects() {
      return state.selects;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
