// Names people give things (mail servers, API keys, their own display name) are shown in one-line places: the
// CLI's tab-separated lists, page titles, log lines. A line break in one forges a row of `juniper servers list`
// under an admin's eyes, and other control characters act on terminals (src/cli/terminal-text.ts escapes those
// on output; a line break it must keep, for the CLI's own lines). So such names refuse every control character.

// eslint-disable-next-line no-control-regex -- exactly the characters refused
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;

export const CONTROL_CHARACTERS_REFUSED = 'may not contain line breaks, tabs or other control characters';

export function hasControlCharacters(text: string): boolean {
  return CONTROL.test(text);
}
