// The scale-out baseline: one process sending with raw nodemailer (pool: true, as many connections as a
// Juniper worker opens), so the same machine's ceiling is measured without Juniper. Prints "ready", waits
// for a line on stdin, sends COUNT small messages at once, prints "done" and exits.
//   node bench/raw-sender.mjs PORT USER PASS COUNT CONNECTIONS
import nodemailer from 'nodemailer';

const [port, user, pass, count, connections] = process.argv.slice(2);
const transport = nodemailer.createTransport({
  host: '127.0.0.1',
  port: Number(port),
  secure: false,
  requireTLS: true,
  tls: { rejectUnauthorized: false },
  pool: true,
  maxConnections: Number(connections),
  maxMessages: Infinity,
  auth: { user, pass },
});
process.stdin.once('data', async () => {
  await Promise.all(
    Array.from({ length: Number(count) }, (_, i) =>
      transport.sendMail({ from: user, to: [`raw${i}@client.test`], subject: `raw ${i}`, text: 'hello\n', messageId: `<raw-${process.pid}-${i}@example.com>` }),
    ),
  );
  transport.close();
  process.stdout.write('done\n');
  process.stdin.destroy();
});
process.stdout.write('ready\n');
