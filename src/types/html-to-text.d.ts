// html-to-text ships no types: the slice of its API parse uses (html-text.ts).
declare module 'html-to-text' {
  export interface HtmlToTextOptions {
    wordwrap?: number | false | null;
    limits?: { maxDepth?: number; maxInputLength?: number; maxChildNodes?: number; ellipsis?: string };
  }
  export function htmlToText(html: string, options?: HtmlToTextOptions): string;
}
