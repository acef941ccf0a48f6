// A loopback IMAP server (plain TCP, no TLS) that behaves well up to LOGIN and then as chosen: answers SELECT
// normally, trickles untagged "* OK" lines after SELECT forever (busy socket, no answer), answers SELECT with a
// huge literal, or has a given list of unseen UIDs, which it FETCHes at once, slowly or never, marks \Seen on
// STORE and SEARCHes (UNSEEN, LARGER). What a user's own hostile or broken server can do.
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
  /**
   * In trickle and slow FETCH mode, the UIDs that come so (none given: all of them); the others of the FETCH
   * before them come at once, and in trickle mode none after the first that trickles.
   */
  slowUids: number[];
  /**
   * The mailbox, unseen at first: SEARCH answers these UIDs (in this order), SEARCH UNSEEN those not marked
   * \Seen since. Setting it starts a fresh mailbox (no \Seen flags).
   */
  unseen: number[];
  /** The UIDs marked \Seen by UID STORE. */
  readonly seen: ReadonlySet<number>;
  /** The UID set of every FETCH of whole messages, in order, over every connection. */
  readonly fetches: readonly string[];
  /** Bytes of slow messages written (slow FETCH mode), over every connection. */
  readonly slowBytesWritten: number;
  /** Literal bytes written after SELECT in literal mode, over every connection. */
  readonly literalBytesWritten: number;
  /** Connections closed by the client (or otherwise ended). */
  readonly closed: number;
  readonly selects: number;
  /** Ends every open connection at once, as a server restart does. */
  dropConnections(): void;
  stop(): Promise<void>;
}

/** `literalSize` is announced in literal mode; `literalSend` is how much of it is written at most. */
export async function startHostileImap(options: { literalSize?: number; literalSend?: number } = {}): Promise<HostileImap> {
  const literalSize = options.literalSize ?? 1000 * 1024 * 1024;
  const literalSend = options.literalSend ?? 64 * 1024 * 1024;
  const sockets = new Set<net.Socket>();
  const state = { literalBytesWritten: 0, closed: 0, selects: 0, slowBytesWritten: 0, seen: new Set<number>(), fetches: [] as string[] };
  const peer = {
    select: 'normal' as SelectMode,
    trickleMs: 200,
    fetch: 'normal' as 'normal' | 'trickle' | 'slow',
    slowBytes: 0,
    slowUids: [] as number[],
    unseen: [] as number[],
  };
  const body = (uid: number) => `Subject: ${uid}\r\n\r\nbody\r\n`;
  const slowHere = (uid: number) => peer.fetch !== 'normal' && (peer.slowUids.length === 0 || peer.slowUids.includes(uid));
  const slowMessage = (uid: number) => Buffer.concat([Buffer.from(`Subject: ${uid}\r\n\r\n`), Buffer.alloc(peer.slowBytes, 'a')]);
  const sizeOf = (uid: number) => (peer.fetch === 'slow' && slowHere(uid) ? slowMessage(uid).length : body(uid).length);
  /** The mailbox's UIDs in an IMAP set ("3", "3:7", "3:*", "1,4:5"), ascending. */
  const inSet = (set: string): number[] => {
    const all = [...peer.unseen].sort((a, b) => a - b);
    const max = all.at(-1) ?? 0;
    const num = (v: string) => (v === '*' ? max : Number.parseInt(v, 10));
    const ranges = set.split(',').map((part) => {
      const [a = '', b = a] = part.split(':');
      const [lo, hi] = [num(a), num(b)].sort((x, y) => x - y) as [number, number];
      return { lo, hi };
    });
    return all.filter((uid) => ranges.some((r) => uid >= r.lo && uid <= r.hi));
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
          const uids = inSet(rest[1] ?? '');
          const seq = (uid: number) => [...peer.unseen].sort((a, b) => a - b).indexOf(uid) + 1;
          if (/RFC822\.SIZE/i.test(line) && !/BODY/i.test(line)) {
            for (const uid of uids) s.write(`* ${seq(uid)} FETCH (UID ${uid} RFC822.SIZE ${sizeOf(uid)})\r\n`);
            s.write(`${tag} OK fetch done\r\n`);
            continue;
          }
          state.fetches.push(rest[1] ?? '');
          // One message after the other, each at once, slowly (then the next) or trickling for ever.
          let k = 0;
          const next = (): void => {
            while (k < uids.length) {
              const uid = uids[k++]!;
              if (!slowHere(uid)) {
                s.write(`* ${seq(uid)} FETCH (UID ${uid} BODY[] {${body(uid).length}}\r\n${body(uid)})\r\n`);
                continue;
              }
              if (peer.fetch === 'trickle') {
                timers.push(setInterval(() => s.write('* OK still fetching\r\n'), peer.trickleMs));
                return;
              }
              const slow = slowMessage(uid);
              s.write(`* ${seq(uid)} FETCH (UID ${uid} BODY[] {${slow.length}}\r\n`);
              let at = 0;
              const piece = setInterval(() => {
                const chunk = slow.subarray(at, at + 64 * 1024);
                s.write(chunk);
                state.slowBytesWritten += chunk.length;
                at += 64 * 1024;
                if (at >= slow.length) {
                  clearInterval(piece);
                  s.write(`)\r\n`);
                  next();
                }
              }, peer.trickleMs);
              timers.push(piece);
              return;
            }
            s.write(`${tag} OK fetch done\r\n`);
          };
          next();
        } else if (verb === 'UID' && rest[0]?.toUpperCase() === 'SEARCH') {
          const words = rest.slice(1).map((w) => w.toUpperCase());
          let uids = peer.unseen;
          if (words.includes('UNSEEN')) uids = uids.filter((uid) => !state.seen.has(uid));
          const larger = words.indexOf('LARGER');
          if (larger >= 0) uids = uids.filter((uid) => sizeOf(uid) > Number(words[larger + 1]));
          s.write(`* SEARCH ${uids.join(' ')}\r\n${tag} OK search done\r\n`);
        } else if (verb === 'UID' && rest[0]?.toUpperCase() === 'STORE') {
          if (/^\+FLAGS/i.test(rest[2] ?? '') && /\\Seen/i.test(line)) for (const uid of inSet(rest[1] ?? '')) state.seen.add(uid);
          s.write(`${tag} OK store done\r\n`);
        } else s.write(`${tag} OK\r\n`);
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
    get slowUids() {
      return peer.slowUids;
    },
    set slowUids(uids: number[]) {
      peer.slowUids = uids;
    },
    get unseen() {
      return peer.unseen;
    },
    set unseen(uids: number[]) {
      peer.unseen = uids;
      state.seen.clear();
    },
    get seen() {
      return state.seen;
    },
    get fetches() {
      return state.fetches;
    },
    get slowBytesWritten() {
      return state.slowBytesWritten;
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
    dropConnections() {
      for (const s of sockets) s.destroy();
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
