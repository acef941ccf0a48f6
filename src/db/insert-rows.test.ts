import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import type { DB } from './schema.js';
import { dialects, freshDatabase } from '../../test/helpers/databases.js';
import type { Database } from './database.js';
import { compileInsert, insertRows } from './insert-rows.js';

const threadRow = (k: number) => ({ subject: `subject ${k}`, last_message_at: 1_000 + k, created_at: 2_000 + k });

for (const dialect of dialects) {
  describe(`insertRows on ${dialect}: INSERTs compiled once per shape`, () => {
    let database: Database;
    let db: Kysely<DB>;
    before(async () => {
      database = await freshDatabase(dialect);
      db = database.db;
    });
    after(() => database.close());

    it('stores and returns what Kysely would, for every row count, the second time from the kept SQL', async () => {
      // Every query Kysely builds is compiled by its executor; a statement sent as kept SQL is not.
      const built: string[] = [];
      const executor = db.getExecutor();
      const compile = executor.compileQuery.bind(executor);
      executor.compileQuery = (node, queryId) => (node.kind === 'InsertQueryNode' && built.push(node.kind), compile(node, queryId));
      try {
        for (const round of [1, 2]) {
          built.length = 0;
          for (const n of [1, 2, 7, 100]) {
            const rows = Array.from({ length: n }, (_, k) => threadRow(round * 1000 + n * 10 + k));
            const returned = await insertRows(db, 'threads', rows, ['id', 'subject']);
            assert.deepEqual(returned.map((r) => r.subject).sort(), rows.map((r) => r.subject).sort());
            const stored = await database.db.selectFrom('threads').select(['subject', 'last_message_at', 'created_at']).where('id', 'in', returned.map((r) => r.id)).execute();
            assert.deepEqual(stored.map((r) => ({ ...r, last_message_at: Number(r.last_message_at), created_at: Number(r.created_at) })).sort((a, b) => a.subject.localeCompare(b.subject)), [...rows].sort((a, b) => a.subject.localeCompare(b.subject)));
          }
          assert.deepEqual(built, round === 1 ? ['InsertQueryNode', 'InsertQueryNode', 'InsertQueryNode', 'InsertQueryNode'] : [], `round ${round}`);
        }
      } finally {
        executor.compileQuery = compile;
      }
    });

    it("lays out the parameters as Kysely's own compilation does: the same SQL, the same values in the same order", () => {
      const rows = [1, 2, 3].map((k) => ({ at: k, actor_user_id: null, actor: 'cli', action: `test.${k}`, target: 't', details: k === 2 ? null : 'd' }));
      const reference = compileInsert(db, 'audit_log', rows, ['id']);
      assert.deepEqual(reference.parameters, rows.flatMap((r) => Object.values(r)));
      assert.equal((reference.sql.match(dialect === 'postgres' ? /\$\d+/g : /\?/g) ?? []).length, 18);
    });

    it('leaves a Kysely with plugins (withSchema, withPlugin) to Kysely: they rewrite the query a kept text would skip', async () => {
      const built: string[] = [];
      const plugin = { transformQuery: (args: { node: { kind: string } }) => (built.push(args.node.kind), args.node), transformResult: async (args: { result: never }) => args.result };
      await insertRows(db, 'threads', [threadRow(90), threadRow(91)], ['id']);
      await insertRows(db.withPlugin(plugin as never), 'threads', [threadRow(92), threadRow(93)], ['id']);
      assert.deepEqual(built, ['InsertQueryNode'], 'built by Kysely although the shape is kept');
    });

    it('sends rows with other keys, a missing value or a non-plain value through Kysely, which handles them', async () => {
      // undefined is DEFAULT to Kysely and a row with its keys in another order is another layout: neither may
      // reuse a kept text. audit_log.details has no NOT NULL, so DEFAULT stores null.
      const entry = (k: number, details: string | undefined) => ({ at: k, actor_user_id: null, actor: 'cli', action: `test.${k}`, target: 't', details });
      await insertRows(db, 'audit_log', [entry(1, 'a'), entry(2, 'b')], ['id']);
      const mixed = await insertRows(db, 'audit_log', [entry(3, 'c'), entry(4, undefined)], ['id']);
      const reordered = await insertRows(db, 'audit_log', [entry(5, 'e'), { details: 'f', target: 't', action: 'test.6', actor: 'cli', actor_user_id: null, at: 6 }], ['id']);
      const stored = await database.db.selectFrom('audit_log').select(['action', 'details']).where('id', 'in', [...mixed, ...reordered].map((r) => r.id)).orderBy('id').execute();
      assert.deepEqual(stored, [{ action: 'test.3', details: 'c' }, { action: 'test.4', details: null }, { action: 'test.5', details: 'e' }, { action: 'test.6', details: 'f' }]);
    });
  });
}
