// One bytea value read from PostgreSQL as raw bytes, through `COPY (SELECT …) TO STDOUT (FORMAT binary)`.
//
// Why not a plain SELECT: PostgreSQL sends a bytea in a result row as hex text, twice its size on the wire, which
// pg gathers into a buffer doubled as it grows, turns into a string and decodes; that garbage was most of what a
// worker on PostgreSQL held beyond one on SQLite (docs/benchmarks.md, outbound memory). pg's binary result
// format (`binary: true`) does not help: pg-protocol 1.16 decodes every field of a row as UTF-8 text, so bytes
// over 0x7f are lost. A COPY's data, though, comes as CopyData messages that pg-protocol hands over as bytes, and
// pg gives them to the query's `handleCopyData`: read here straight into a Buffer of the value's size.
//
// COPY takes no bind parameters, so the statement is SQL text: callers build it from values they have checked
// (see BlobStore, which passes only a hex hash and integers).
import type pg from 'pg';
import { pgModule } from './pg-module.js';
import { AppError } from '../lib/errors.js';

/** The binary COPY file's header: 11 bytes of signature, 32-bit flags, 32-bit length of an extension area. */
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const HEADER_BYTES = SIGNATURE.length + 8;

/**
 * Runs `select` (a SELECT of one bytea column, in any number of rows) through a binary COPY on a client of
 * `pool`; the rows' values joined in their order, in a Buffer allocated once at `expected` bytes (fewer if the
 * rows had fewer; more is an error, as is a NULL or a second column).
 */
export async function copyBytea(pool: pg.Pool, select: string, expected: number): Promise<Buffer> {
  const client = await pool.connect();
  const reader = new ByteaCopyReader(expected);
  let broken: unknown;
  try {
    const query = new (pgModule().Query)(`COPY (${select}) TO STDOUT (FORMAT binary)`);
    // pg calls this for each CopyData message; the chunk is a view of pg's read buffer, which pg reuses, so it
    // is copied out at once. An error here would be thrown inside pg's message handler: kept for after the end.
    (query as unknown as { handleCopyData: (msg: { chunk: Buffer }) => void }).handleCopyData = (msg) => {
      if (reader.failure) return;
      try {
        reader.push(msg.chunk);
      } catch (e) {
        reader.failure = e instanceof Error ? e : new Error(String(e));
      }
    };
    await new Promise<void>((resolve, reject) => {
      query.once('end', () => resolve());
      query.once('error', reject);
      client.query(query);
    });
  } catch (e) {
    broken = e;
    throw e;
  } finally {
    // A failed COPY may leave the connection mid-protocol: dropped rather than handed to the next caller.
    client.release(broken === undefined ? undefined : true);
  }
  return reader.result();
}

type State = 'header' | 'extension' | 'count' | 'length' | 'data' | 'end';

/** Parses the binary COPY format of a result with one bytea column, fed in arbitrary chunks, joining its rows. */
export class ByteaCopyReader {
  failure: Error | undefined;
  private state: State = 'header';
  /** The fixed-size field being gathered (a header, a count, a length), which may straddle chunks. */
  private readonly field = Buffer.alloc(HEADER_BYTES);
  private fieldBytes = 0;
  private skip = 0;
  private readonly value: Buffer;
  private filled = 0;
  /** Where the current row's value ends in `value`. */
  private rowEnd = 0;

  constructor(expected: number) {
    this.value = Buffer.allocUnsafe(expected);
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.state === 'end') throw protocolError('bytes after the end of the data');
      if (this.state === 'extension') {
        const n = Math.min(this.skip, chunk.length - at);
        at += n;
        this.skip -= n;
        if (this.skip === 0) this.state = 'count';
        continue;
      }
      if (this.state === 'data') {
        const n = Math.min(this.rowEnd - this.filled, chunk.length - at);
        chunk.copy(this.value, this.filled, at, at + n);
        at += n;
        this.filled += n;
        if (this.filled === this.rowEnd) this.state = 'count';
        continue;
      }
      const need = this.state === 'header' ? HEADER_BYTES : this.state === 'count' ? 2 : 4;
      const n = Math.min(need - this.fieldBytes, chunk.length - at);
      chunk.copy(this.field, this.fieldBytes, at, at + n);
      at += n;
      this.fieldBytes += n;
      if (this.fieldBytes < need) return;
      this.fieldBytes = 0;
      this.onField();
    }
  }

  /** The joined values once the data has ended. */
  result(): Buffer {
    if (this.failure) throw this.failure;
    // A value that ends early, or no trailer: the server ended the COPY before its data did.
    if (this.state !== 'end') throw protocolError('the data ended early');
    return this.filled === this.value.length ? this.value : this.value.subarray(0, this.filled);
  }

  private onField(): void {
    const f = this.field;
    switch (this.state) {
      case 'header': {
        if (!f.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw protocolError('no binary COPY signature');
        this.skip = f.readUInt32BE(SIGNATURE.length + 4);
        this.state = this.skip > 0 ? 'extension' : 'count';
        return;
      }
      case 'count': {
        const columns = f.readInt16BE(0);
        if (columns === -1) {
          this.state = 'end';
          return;
        }
        if (columns !== 1) throw protocolError(`a row of ${columns} columns, not one`);
        this.state = 'length';
        return;
      }
      case 'length': {
        const length = f.readInt32BE(0);
        if (length === -1) throw protocolError('a NULL value');
        if (this.filled + length > this.value.length) throw protocolError(`more than the ${this.value.length} bytes expected`);
        this.rowEnd = this.filled + length;
        this.state = length === 0 ? 'count' : 'data';
        return;
      }
      default:
        throw protocolError(`unexpected state ${this.state}`);
    }
  }
}

function protocolError(what: string): AppError {
  return new AppError('JUNIPER_ERR_DATABASE', `Reading bytes from PostgreSQL through COPY failed: ${what}.`);
}
