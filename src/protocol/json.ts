/**
 * JSON values: the type, the structural check, the limits Drover puts on the values it stores, and
 * a bounded preview for error messages.
 *
 * Every walk here is iterative (an explicit stack), never recursive: values arrive from users and
 * from other processes, and a recursive walk of a 100,000-deep array overflows the stack. Whatever
 * passes {@link checkJsonShape} nests at most {@link MAX_JSON_DEPTH} levels, so the recursive code
 * that handles a stored value afterwards (`JSON.stringify`, drivers, structured clone, printers)
 * stays far from the stack limit.
 *
 * @module
 */
import { JsonLimitError, InputError } from '../errors/index.js';

/** A JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** True when `v` is a plain JSON object (not null, not an array). */
export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Limits on a JSON value Drover stores. */
export interface JsonLimits {
  /** Most bytes of the value's JSON text (UTF-8, as `JSON.stringify` writes it). */
  maxBytes: number;
  /** Most levels of nested arrays and objects: a scalar has depth 0, `[]` depth 1, `[[1]]` depth 2. */
  maxDepth: number;
}

/** Most levels of nested arrays and objects in any value Drover stores (see docs/processes.md). */
export const MAX_JSON_DEPTH = 64;

const MiB = 1024 * 1024;

/** Limits of a process's inputs (checked at submit, for every process and child process). */
export const INPUT_LIMITS: Readonly<JsonLimits> = Object.freeze({ maxBytes: 16 * MiB, maxDepth: MAX_JSON_DEPTH });

/**
 * Limits of what a run produces: a process's outputs and each journaled step result. Larger than
 * {@link INPUT_LIMITS} because `core.shell` alone may keep 16 MiB of stdout and 16 MiB of stderr.
 */
export const RESULT_LIMITS: Readonly<JsonLimits> = Object.freeze({ maxBytes: 64 * MiB, maxDepth: MAX_JSON_DEPTH });

/** What is wrong with a value, as found by {@link inspect}. */
type Problem = { kind: 'not-json'; path: string; what: string } | { kind: 'too-deep' } | { kind: 'too-large' };

/** One container being walked: its children are visited in order. */
interface Frame {
  node: object;
  /** Keys of an object, or null for an array. */
  keys: string[] | null;
  length: number;
  next: number;
}

/** Describes a value that cannot be JSON, for "… is a function". */
function whatIsIt(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return String(v); // NaN, Infinity
  if (typeof v === 'bigint') return 'a bigint';
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'symbol') return 'a symbol';
  const name = (Object.getPrototypeOf(v) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
  return typeof name === 'string' && name !== '' ? `an instance of ${name}` : 'not a plain object';
}

/** Where the value being visited is, as a JSONPath (`$.a[3]`), cut at 200 characters. */
function pathOf(stack: readonly Frame[]): string {
  let out = '$';
  for (const f of stack) {
    const i = f.next - 1;
    out +=
      f.keys === null
        ? `[${i}]`
        : /^[A-Za-z_$][\w$]*$/.test(f.keys[i]!)
          ? `.${f.keys[i]}`
          : `[${JSON.stringify(f.keys[i])}]`;
    if (out.length > 200) return `${out.slice(0, 200)}…`;
  }
  return out;
}

/**
 * Walks `v` once, iteratively. Returns the first problem found, or null. `minBytes` accumulates a
 * lower bound of the JSON text's UTF-8 length (every UTF-16 unit of a string or key takes at least a
 * byte, escapes only add), so a value far over the size limit is refused without serializing it.
 */
function inspect(v: unknown, maxDepth: number, maxBytes: number): Problem | null {
  const stack: Frame[] = [];
  const onPath = new Set<object>(); // containers being walked: meeting one again is a cycle
  let minBytes = 0;
  let current: unknown = v;
  for (;;) {
    // Visit `current`.
    if (current === null || typeof current === 'boolean') {
      minBytes += 4;
    } else if (typeof current === 'string') {
      minBytes += current.length + 2;
    } else if (typeof current === 'number') {
      if (!Number.isFinite(current)) return { kind: 'not-json', path: pathOf(stack), what: whatIsIt(current) };
      minBytes += 1;
    } else if (typeof current === 'object') {
      const isArray = Array.isArray(current);
      if (!isArray) {
        const proto = Object.getPrototypeOf(current) as unknown;
        if (proto !== Object.prototype && proto !== null) {
          return { kind: 'not-json', path: pathOf(stack), what: whatIsIt(current) };
        }
      }
      if (onPath.has(current))
        return { kind: 'not-json', path: pathOf(stack), what: 'a reference to a value containing it (a cycle)' };
      if (stack.length >= maxDepth) return { kind: 'too-deep' };
      const keys = isArray ? null : Object.keys(current);
      const length = isArray ? (current as unknown[]).length : keys!.length;
      minBytes += 2 + Math.max(0, length - 1);
      if (keys !== null) for (const k of keys) minBytes += k.length + 3;
      onPath.add(current);
      stack.push({ node: current, keys, length, next: 0 });
    } else {
      return { kind: 'not-json', path: pathOf(stack), what: whatIsIt(current) };
    }
    if (minBytes > maxBytes) return { kind: 'too-large' };
    // Find the next value to visit: the next child of the innermost unfinished container.
    let found = false;
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.next < top.length) {
        const i = top.next++;
        current = top.keys === null ? (top.node as unknown[])[i] : (top.node as Record<string, unknown>)[top.keys[i]!];
        found = true;
        break;
      }
      onPath.delete(top.node);
      stack.pop();
    }
    if (!found) return null;
  }
}

/**
 * True when `v` survives a JSON round trip unchanged in meaning: no functions, undefined (also no
 * array holes), NaN/Infinity, class instances, cycles or bigint. Any depth: the size and depth
 * limits are {@link checkJsonShape}'s and {@link checkJsonValue}'s business.
 */
export function isJsonValue(v: unknown): v is JsonValue {
  return inspect(v, Infinity, Infinity) === null;
}

function formatBytes(n: number): string {
  return n % MiB === 0 ? `${n / MiB} MiB` : `${n} bytes`;
}

function throwProblem(p: Problem, what: string, plural: boolean, limits: JsonLimits): never {
  switch (p.kind) {
    case 'not-json':
      throw new InputError(`${what} ${plural ? 'are' : 'is'} not a JSON value: ${p.path} is ${p.what}`);
    case 'too-deep':
      throw new JsonLimitError(
        `${what} ${plural ? 'nest' : 'nests'} deeper than the limit of ${limits.maxDepth} levels of arrays and objects`,
      );
    case 'too-large':
      throw new JsonLimitError(
        `${what} ${plural ? 'are' : 'is'} larger than the limit of ${formatBytes(limits.maxBytes)} of JSON text`,
      );
  }
}

/**
 * Checks that `v` is a JSON value within `limits` of depth, and not certainly over the size limit,
 * without serializing it (one iterative walk). For checks before other code looks at the value.
 * @param what - what the value is, for the message (`inputs of 'core.shell'`).
 * @param plural - whether `what` takes a plural verb ("inputs … nest", "the result … nests").
 * @throws JsonLimitError when it nests deeper or is larger than the limits; InputError when it is
 *   not a JSON value (naming where in it).
 */
export function checkJsonShape(v: unknown, what: string, limits: JsonLimits, plural = true): asserts v is JsonValue {
  const p = inspect(v, limits.maxDepth, limits.maxBytes);
  if (p !== null) throwProblem(p, what, plural, limits);
}

/**
 * Checks `v` like {@link checkJsonShape}, then serializes it and checks the exact size.
 * @returns the JSON text of `v`.
 * @throws JsonLimitError or InputError as {@link checkJsonShape}.
 */
export function checkJsonValue(v: unknown, what: string, limits: JsonLimits, plural = true): string {
  checkJsonShape(v, what, limits, plural);
  let text: string;
  try {
    text = JSON.stringify(v);
  } catch (err) {
    // The depth is bounded, so a RangeError is a text longer than V8's strings allow.
    if (err instanceof RangeError) throwProblem({ kind: 'too-large' }, what, plural, limits);
    throw new InputError(`${what} cannot be serialized as JSON: ${(err as Error).message}`, { cause: err });
  }
  // A quick bound first: UTF-8 takes at most 3 bytes per UTF-16 unit.
  if (text.length * 3 > limits.maxBytes && Buffer.byteLength(text, 'utf8') > limits.maxBytes) {
    throwProblem({ kind: 'too-large' }, what, plural, limits);
  }
  return text;
}

/**
 * A short JSON-like preview of any value, for error messages: at most `maxChars` characters (then
 * `...`), written iteratively, so it never throws, whatever the value's depth, size or cycles.
 */
export function jsonPreview(v: unknown, maxChars = 60): string {
  const out: string[] = [];
  let length = 0;
  const emit = (s: string): boolean => {
    out.push(s);
    length += s.length;
    return length <= maxChars;
  };
  const scalar = (x: unknown): string => {
    if (typeof x === 'string') return JSON.stringify(x.length > maxChars ? x.slice(0, maxChars + 1) : x);
    if (typeof x === 'number') return Number.isFinite(x) ? String(x) : 'null';
    if (x === null || typeof x === 'boolean') return String(x);
    if (typeof x === 'bigint') return `${x}n`;
    if (typeof x === 'function') return '[function]';
    if (typeof x === 'symbol') return x.toString();
    return 'undefined';
  };
  // Work items: a value to write, or literal text (closing brackets, commas, keys).
  // Every item writes at least one character, so the loop ends after `maxChars` items, cycles or not.
  const work: Array<{ value: unknown } | { text: string }> = [{ value: v }];
  while (work.length > 0) {
    const item = work.pop()!;
    if ('text' in item) {
      if (!emit(item.text)) break;
      continue;
    }
    const x = item.value;
    if (typeof x !== 'object' || x === null) {
      if (!emit(scalar(x))) break;
      continue;
    }
    const isArray = Array.isArray(x);
    const entries: Array<[string | null, unknown]> = [];
    // Only as many children as could still be shown.
    const room = Math.max(1, maxChars - length);
    if (isArray) {
      const a = x as unknown[];
      for (let i = 0; i < a.length && i < room; i++) entries.push([null, a[i]]);
    } else {
      let n = 0;
      for (const k in x) {
        if (!Object.hasOwn(x, k)) continue;
        if (n++ >= room) break;
        entries.push([k, (x as Record<string, unknown>)[k]]);
      }
    }
    if (!emit(isArray ? '[' : '{')) break;
    work.push({ text: isArray ? ']' : '}' });
    for (let i = entries.length - 1; i >= 0; i--) {
      const [k, val] = entries[i]!;
      work.push({ value: val });
      if (k !== null) work.push({ text: `${JSON.stringify(k)}:` });
      if (i > 0) work.push({ text: ',' });
    }
  }
  const text = out.join('');
  return text.length > maxChars ? `${text.slice(0, Math.max(0, maxChars - 3))}...` : text;
}
