// The text of an HTML part, for a message that has no text part of its own (the API's `text`, search, the
// bounce rules' quoted Message-IDs read it). mailparser made it with html-to-text's defaults, whose word wrap
// (splitLongWord) is quadratic in a run of text without spaces: 20,000 `<img src=...>` (0.44 MB, each one an
// `[url]` word) took 4.5 s, a 3.5 MB message outlasted the 300 s fetch lease, so any sender could stall a
// server's incoming mail with one small message. Here there is no wrapping (clients wrap; a stored text
// wrapped at 80 columns helped no one), which is linear (about 1 s a megabyte on a busy core), and a
// budget: of a message's HTML at most HTML_TEXT_MAX_CHARS are made into text. Beyond it the text is that of
// the first HTML_TEXT_MAX_CHARS only: a prefix, rather than no text, because a newsletter that large still
// carries its words near the top, and search and the API's `text` should find them.
import { htmlToText } from 'html-to-text';

/** How much of one message's HTML is made into text at most (characters of HTML, summed over its parts). */
export const HTML_TEXT_MAX_CHARS = 1024 * 1024;

/** mailparser's nesting limit: deeper elements are left out of the text (html-to-text's maxDepth). */
const MAX_DEPTH = 1000;

/** Converts HTML parts to text within one budget, shared by all the HTML parts of a message. */
export class HtmlText {
  private left: number;

  constructor(budget = HTML_TEXT_MAX_CHARS) {
    this.left = budget;
  }

  /** The text of `html`, of its first characters when the budget runs out; '' once it has. */
  convert(html: string): string {
    if (this.left <= 0) return '';
    const taken = html.length > this.left ? html.slice(0, this.left) : html;
    this.left -= taken.length;
    try {
      return htmlToText(taken, { wordwrap: false, limits: { maxDepth: MAX_DEPTH } });
    } catch {
      // HTML that cannot be made into text is no reason to lose the message: it keeps its HTML (as mailparser).
      return '';
    }
  }
}
