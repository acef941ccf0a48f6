// `juniper send` (enqueue fields or an .eml) and `juniper mails …` (the outbox). The running `juniper serve`
// or `juniper worker` sends what is queued.
import fs from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { cliActor } from '../audit/audit-log.js';
import type { MailState } from '../db/schema.js';
import { AppError } from '../lib/errors.js';
import type { MailView } from '../outgoing/queue.js';

// The queue's module (kysely, nodemailer's address parser) loads with the app, not with `--help`.
const mailViewOf = async () => (await import('../outgoing/queue.js')).mailView;
import { readAllStdin } from './prompt.js';
import type { WithApp } from './with-app.js';

const collect = (value: string, previous: string[]) => [...previous, value];

interface SendOptions {
  from?: string;
  to: string[];
  cc: string[];
  bcc: string[];
  replyTo?: string;
  subject?: string;
  text?: string;
  html?: string;
  attach: string[];
  eml?: string;
  server?: string;
  massMailing: boolean;
}

function readFile(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new AppError('JUNIPER_ERR_VALIDATION', `Cannot read ${file}: ${(e as Error).message}`);
  }
}

const mailLine = (m: MailView) =>
  `${m.id}\t${m.state}${m.waitingReason ? ' (waiting)' : ''}\t${m.attempts} attempt(s)\t${m.from} → ${[...m.to, ...m.cc].join(', ')}\t${m.subject}${m.failureReason ?? m.waitingReason ? `\t${m.failureReason ?? m.waitingReason}` : ''}\n`;

export function sendCommand(withApp: WithApp): Command {
  return new Command('send')
    .description('queue a mail (from fields, or a complete .eml with --eml FILE or --eml - for stdin); prints its id and Message-ID')
    .option('--from <address>', 'sender, e.g. "Jane Doe <jane@example.com>"')
    .option('--to <address>', 'recipient (repeat for more)', collect, [])
    .option('--cc <address>', 'copy (repeat for more)', collect, [])
    .option('--bcc <address>', 'blind copy (repeat for more)', collect, [])
    .option('--reply-to <address>', 'Reply-To')
    .option('--subject <subject>', 'subject')
    .option('--text <text>', 'plain-text body')
    .option('--html <html>', 'HTML body')
    .option('--attach <file>', 'attach a file (repeat for more)', collect, [])
    .option('--eml <file>', 'send this complete message as it is (- reads stdin); --to then overrides the recipients')
    .option('--server <id>', 'force this outgoing server')
    .addOption(new Option('--mass-mailing', 'send as a mass mailing (the dedicated server when one is set)').default(false))
    .action(async (o: SendOptions) => {
      const serverId = o.server ? Number(o.server) : null;
      const result = await withApp(async (app) => {
        if (o.eml) {
          const raw = o.eml === '-' ? Buffer.from(await readAllStdin(), 'utf8') : readFile(o.eml);
          return app.services.outbox.enqueueRaw(raw, { to: o.to.length ? o.to : undefined, serverId, massMailing: o.massMailing }, null, cliActor);
        }
        if (!o.from) throw new AppError('JUNIPER_ERR_VALIDATION', 'Give --from (or --eml FILE).');
        return app.services.outbox.enqueue(
          {
            from: o.from,
            to: o.to,
            cc: o.cc,
            bcc: o.bcc,
            replyTo: o.replyTo,
            subject: o.subject ?? '',
            text: o.text,
            html: o.html,
            attachments: o.attach.map((file) => ({ filename: path.basename(file), contentType: 'application/octet-stream', contentBase64: readFile(file).toString('base64') })),
            serverId,
            massMailing: o.massMailing,
          },
          null,
          cliActor,
        );
      });
      process.stdout.write(`Queued mail ${result.id} ${result.messageId}\n`);
    });
}

export function mailsCommand(withApp: WithApp): Command {
  const mails = new Command('mails').description('the outgoing queue');
  mails
    .command('list')
    .description('recent outgoing mails, newest first')
    .addOption(new Option('--state <state>', 'only this state').choices(['queued', 'sending', 'sent', 'failed', 'cancelled']))
    .option('--server <id>', 'only mails sent (or tried) through this server')
    .option('--limit <n>', 'how many', '50')
    .option('--json', 'JSON output', false)
    .action(async (o: { state?: MailState; server?: string; limit: string; json: boolean }) => {
      const rows = await withApp(async (app) => (await app.services.queue.list({ state: o.state, serverId: o.server ? Number(o.server) : undefined, limit: Number(o.limit) })).map(await mailViewOf()));
      process.stdout.write(o.json ? JSON.stringify(rows, null, 2) + '\n' : rows.map(mailLine).join('') || 'No mails.\n');
    });
  mails
    .command('show')
    .argument('<id>', 'mail id')
    .description('one mail with its state, server and the server\'s reply')
    .option('--json', 'JSON output (the default: a mail has too many fields for one line)', true)
    .action(async (id: string) => {
      const m = await withApp(async (app) => (await mailViewOf())(await app.services.queue.get(Number(id))));
      process.stdout.write(JSON.stringify(m, null, 2) + '\n');
    });
  for (const [op, description] of [['retry', 'queue a failed, cancelled or waiting mail again now'], ['cancel', 'cancel a queued mail']] as const) {
    mails
      .command(op)
      .argument('<id>', 'mail id')
      .description(description)
      .action(async (id: string) => {
        process.stdout.write(
          mailLine(
            await withApp(async (app) => {
              const mail = (await mailViewOf())(await app.services.queue[op](Number(id)));
              // A retried mail is due now: the workers (on PostgreSQL, by notification) take it without waiting for their poll.
              if (op === 'retry') app.services.outbox.wake();
              return mail;
            }),
          ),
        );
      });
  }
  return mails;
}
