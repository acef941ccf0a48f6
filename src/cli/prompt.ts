// Reading secrets interactively without echoing them, and from a pipe when not on a terminal.
import readline from 'node:readline';

export async function readHiddenLine(question: string): Promise<string> {
  const input = process.stdin;
  if (!input.isTTY) return readAllStdin().then((s) => s.replace(/\r?\n$/, ''));
  const rl = readline.createInterface({ input, output: process.stderr, terminal: true });
  // Suppress echo: readline writes typed characters through _writeToOutput.
  (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s: string) => {
    if (s.startsWith(question)) process.stderr.write(question);
  };
  try {
    return await new Promise<string>((resolve) => rl.question(question, resolve));
  } finally {
    rl.close();
    process.stderr.write('\n');
  }
}

export async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
