// What the CLI prints is partly written by people and peers an admin does not control: a user names their
// mail server or API key, a mail server words its reply (kept as a mail's failure reason), a sender writes a
// subject. A control character in such text is a command to the admin's terminal: ESC starts sequences that
// set the window title, write the clipboard (OSC 52), clear the screen, move the cursor or recolour text, so a
// user's server name could hide or forge the lines `juniper servers list` or `juniper doctor` shows (hostile
// review 16). Every text the CLI writes on stdout and stderr shows them as visible escapes (`\u001b`) instead;
// tab, line feed and carriage return stay, as the CLI's own tables and progress bar use them. The escape is
// JSON's own, so `--json` output stays valid JSON and reads back as the same text (JSON.stringify escapes C0
// controls already, but not DEL or the C1 controls).

// C0 controls but tab (09), line feed (0a) and carriage return (0d); DEL; the C1 controls (0x80-0x9f: CSI is one).
// eslint-disable-next-line no-control-regex -- these are exactly the characters a terminal obeys
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/g;

/** The text with every control character a terminal would act on written out as `\u00NN`. */
export function terminalText(text: string): string {
  return text.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Makes every string written to the stream terminal-safe (Buffers pass as they are: bytes asked for, such as a
 * raw message). Returns the function that puts the stream's own write back.
 */
export function guardTerminalOutput(stream: NodeJS.WriteStream): () => void {
  const own = Object.getOwnPropertyDescriptor(stream, 'write');
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  stream.write = (chunk: unknown, ...rest: unknown[]) => write(typeof chunk === 'string' ? terminalText(chunk) : chunk, ...rest);
  return () => {
    if (own) Object.defineProperty(stream, 'write', own);
    else Reflect.deleteProperty(stream, 'write');
  };
}
