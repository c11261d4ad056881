/**
 * Locates the first syntax error in a JSON text. `JSON.parse` only sometimes says where it
 * stopped (and, in some Node versions, quotes the whole input in its message, which for the
 * configuration file would print passwords), so when it fails we scan the text ourselves to
 * report a line and column and a short reason that never repeats the file's content.
 *
 * @module
 */

/** Where and why a JSON text is invalid. */
export interface JsonSyntaxProblem {
  /** 0-based offset into the text (in UTF-16 code units, as `String.prototype.slice` counts). */
  offset: number;
  /** 1-based line. */
  line: number;
  /** 1-based column. */
  column: number;
  /** What is wrong, e.g. `expected ',' or '}' after a property value`. */
  reason: string;
}

/** Converts a 0-based offset into a 1-based line and column. */
export function lineColumnAt(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

class Fail extends Error {
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** Describes the character at `i` without quoting more than that one character. */
function describeAt(text: string, i: number): string {
  if (i >= text.length) return 'the end of the file';
  const c = text[i]!;
  if (c === '\n') return 'a line break';
  if (c === '\r') return 'a carriage return';
  if (c === '\t') return 'a tab';
  const code = c.charCodeAt(0);
  if (code < 0x20) return `control character U+${code.toString(16).padStart(4, '0').toUpperCase()}`;
  return `'${c}'`;
}

/**
 * Returns the first syntax error of `text`, or `null` when it is valid JSON (as RFC 8259 and
 * `JSON.parse` define it).
 */
export function findJsonSyntaxError(text: string): JsonSyntaxProblem | null {
  let i = 0;
  const ws = (): void => {
    while (i < text.length) {
      const c = text[i];
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r') i++;
      else break;
    }
  };
  const fail = (reason: string, at = i): never => {
    throw new Fail(at, reason);
  };
  const literal = (word: string): void => {
    for (let k = 0; k < word.length; k++) {
      if (text[i + k] !== word[k]) fail(`invalid literal: expected '${word}'`, i + k);
    }
    i += word.length;
  };
  const string = (): void => {
    const start = i;
    i++; // opening quote
    for (;;) {
      if (i >= text.length) fail('unterminated string', start);
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail(`${describeAt(text, i)} inside a string (escape it)`);
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === undefined) fail('unterminated string', start);
        if ('"\\/bfnrt'.includes(e!)) i += 2;
        else if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail('invalid \\u escape in a string');
          i += 6;
        } else fail(`invalid escape '\\${e}' in a string`);
        continue;
      }
      i++;
    }
  };
  const number = (): void => {
    if (text[i] === '-') i++;
    if (text[i] === '0') i++;
    else if (/[1-9]/.test(text[i] ?? '')) while (/[0-9]/.test(text[i] ?? '')) i++;
    else fail(`invalid number: expected a digit, got ${describeAt(text, i)}`);
    if (text[i] === '.') {
      i++;
      if (!/[0-9]/.test(text[i] ?? '')) fail(`invalid number: expected a digit after '.', got ${describeAt(text, i)}`);
      while (/[0-9]/.test(text[i] ?? '')) i++;
    }
    if (text[i] === 'e' || text[i] === 'E') {
      i++;
      if (text[i] === '+' || text[i] === '-') i++;
      if (!/[0-9]/.test(text[i] ?? ''))
        fail(`invalid number: expected a digit in the exponent, got ${describeAt(text, i)}`);
      while (/[0-9]/.test(text[i] ?? '')) i++;
    }
  };
  const value = (depth: number): void => {
    if (depth > 1000) fail('nested too deeply');
    ws();
    const c = text[i];
    if (c === undefined) fail('unexpected end of the file: expected a value');
    else if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') {
          fail(
            text[i] === '}'
              ? "trailing comma before '}'"
              : `expected a double-quoted property name, got ${describeAt(text, i)}`,
          );
        }
        string();
        ws();
        if (text[i] !== ':') fail(`expected ':' after a property name, got ${describeAt(text, i)}`);
        i++;
        value(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail(`expected ',' or '}' after a property value, got ${describeAt(text, i)}`);
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] === ']') fail("trailing comma before ']'");
        value(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail(`expected ',' or ']' after an array element, got ${describeAt(text, i)}`);
      }
    } else if (c === '"') string();
    else if (c === 't') literal('true');
    else if (c === 'f') literal('false');
    else if (c === 'n') literal('null');
    else if (c === '-' || (c >= '0' && c <= '9')) number();
    else fail(`unexpected ${describeAt(text, i)}: expected a value`);
  };
  try {
    if (text.trim() === '') fail('the file is empty: expected a JSON object', 0);
    value(0);
    ws();
    if (i < text.length) fail(`unexpected ${describeAt(text, i)} after the end of the JSON value`);
    return null;
  } catch (err) {
    if (!(err instanceof Fail)) throw err;
    const { line, column } = lineColumnAt(text, err.offset);
    return { offset: err.offset, line, column, reason: err.reason };
  }
}
