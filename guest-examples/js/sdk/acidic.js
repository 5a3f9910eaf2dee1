// The acidic SDK for JavaScript steps: a step is a function of a context.
//
//   import { step, fatal } from '../sdk/acidic.js';
//
//   export const run = step((cx) => {
//     const name = cx.arg('name');                 // the run's args
//     const n = cx.get('greetings') ?? 0;          // a persisted attribute
//     cx.set('greetings', n + 1);                  // committed with the step
//     if (!name) throw fatal('name is empty');     // fails the run, commits nothing
//     return cx.finish(`hello, ${name}`);          // or return nothing: continue
//   });
//
// Attributes, args and results are plain JS values (JSON underneath). A
// thrown `fatal(...)` fails the run at once; anything else thrown is a
// retryable error (the step's retry policy applies). Built with
// `jco componentize --backend quickjs` against the WIT world `acidic:step/step`.

import * as context from 'acidic:step/context@0.3.0';
import * as attributes from 'acidic:step/attributes@0.3.0';
import * as staging from 'acidic:step/staging@0.3.0';
import * as sqlApi from 'acidic:step/sql@0.3.0';

/** A step error: `retryable` errors are retried per policy, others fail the run. */
export class StepError extends Error {
  constructor(message, retryable = true) {
    super(String(message));
    this.name = 'StepError';
    this.retryable = retryable !== false;
  }
}

/** An error that fails the run now. */
export const fatal = (message) => new StepError(message, false);
/** An error the step's retry policy retries. */
export const retryable = (message) => new StepError(message, true);

const CONTINUE = { tag: 'continue' };
const REPEAT = { tag: 'repeat' };

/** A SQL value: numbers become integer or real, strings text, null null,
 *  Uint8Array blob, anything else JSON. `sql.json(v)` forces JSON.
 *  (The QuickJS bindings carry 64-bit integers as JS numbers: integers beyond
 *  2^53 are refused rather than rounded.) */
function toSql(v) {
  if (v === null || v === undefined) return { tag: 'null' };
  if (v && v.tag && 'val' in v && ['json', 'text', 'blob', 'integer', 'real'].includes(v.tag)) return v;
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw fatal(`sql parameter ${v} is beyond 2^53; bind it as text`);
    }
    return { tag: 'integer', val: Number(v) };
  }
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) return { tag: 'integer', val: v };
    return { tag: 'real', val: v };
  }
  if (typeof v === 'boolean') return { tag: 'integer', val: v ? 1 : 0 };
  if (typeof v === 'string') return { tag: 'text', val: v };
  if (v instanceof Uint8Array) return { tag: 'blob', val: v };
  return { tag: 'json', val: JSON.stringify(v) };
}

/** JSON text of `value`, or a fatal error naming `what` if it has none. */
function jsonText(value, what) {
  let text;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (e) {
    throw fatal(`${what}: ${e.message}`);
  }
  if (typeof text !== 'string') throw fatal(`${what}: ${typeof value} is not JSON`);
  return text;
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

function fromSql(v) {
  switch (v.tag) {
    case 'null': return null;
    case 'integer': {
      const n = Number(v.val);
      if (!Number.isSafeInteger(n)) throw fatal(`sql: integer ${v.val} is beyond 2^53; CAST it AS TEXT`);
      return n;
    }
    case 'json': return JSON.parse(v.val);
    default: return v.val;
  }
}

function sqlError(e) {
  const p = e && e.payload !== undefined ? e.payload : e;
  if (p && p.tag === 'refused') return fatal(`sql refused: ${p.val}`);
  if (p && p.tag === 'failed') return retryable(`sql failed: ${p.val}`);
  return e;
}

/** Explicit SQL values: `sql.json(obj)`, `sql.text('12')`. */
export const sql = {
  json: (v) => ({ tag: 'json', val: JSON.stringify(v) }),
  text: (v) => ({ tag: 'text', val: String(v) }),
};

/** What a step sees: its input, the run's args and attributes, staging, SQL, logging. */
export class Ctx {
  constructor(input) {
    this.input = input;
    this._args = undefined;
  }
  /** The step being run. */
  get step() { return this.input.step; }
  /** The run's idempotency key. */
  get key() { return this.input.idempotencyKey; }
  /** The run's numeric id. */
  get runId() { return Number(this.input.runId); }
  /** The workflow's name. */
  get workflow() { return this.input.workflow; }
  /** This step's attempt, from 1. */
  get attempt() { return this.input.attempt; }
  /** A key stable across retries of this step: the idempotency key for external APIs. */
  get stepKey() { return this.input.stepKey; }
  /** The run's args. */
  get args() {
    if (this._args === undefined) this._args = JSON.parse(this.input.args);
    return this._args;
  }
  /** One arg; throws a fatal error if it is missing. */
  arg(name) {
    const v = this.args === null ? undefined : this.args[name];
    if (v === undefined) throw fatal(`missing arg \`${name}\``);
    return v;
  }
  /** An attribute's value, or undefined if it is not set. */
  get(name) {
    const text = attributes.get(name);
    return text === undefined || text === null ? undefined : JSON.parse(text);
  }
  /** An attribute's value; throws a fatal error if it is not set. */
  require(name) {
    const v = this.get(name);
    if (v === undefined) throw fatal(`attribute \`${name}\` is not set`);
    return v;
  }
  /** Sets an attribute; committed with the step. */
  set(name, value) {
    if (value === undefined) throw fatal(`attribute \`${name}\`: undefined is not JSON`);
    const text = jsonText(value, `attribute \`${name}\``);
    try {
      attributes.set(name, text);
    } catch (e) {
      throw fatal(`attribute \`${name}\`: ${e.payload ?? e}`);
    }
  }
  /** Removes an attribute. */
  delete(name) { attributes.delete(name); }
  /** The names of all attributes, sorted. */
  attributeNames() { return attributes.names(); }
  /** Stages a run of `workflow` (exists only if this step commits); returns its key.
   *  opts: { key, delayMs, queue, awaits }. */
  enqueue(workflow, args = null, opts = {}) {
    const text = jsonText(args, `enqueue ${workflow}: args`);
    try {
      return staging.enqueue({
        workflow: String(workflow),
        args: text,
        key: opts.key,
        delayMs: opts.delayMs,
        queue: opts.queue,
        awaits: !!opts.awaits,
      });
    } catch (e) {
      throw fatal(`enqueue ${workflow}: ${e.payload ?? e}`);
    }
  }
  /** The runs this run staged, oldest first: { workflow, key, status, output }. */
  children() {
    return staging.children().map((c) => ({
      workflow: c.workflow,
      key: c.key,
      status: c.status,
      output: c.output === undefined || c.output === null ? undefined : JSON.parse(c.output),
    }));
  }
  /** Runs one INSERT, UPDATE or DELETE in the step's transaction; returns rows changed. */
  execute(statement, params = []) {
    try {
      return Number(sqlApi.execute(statement, params.map(toSql)));
    } catch (e) {
      throw sqlError(e);
    }
  }
  /** Runs one SELECT in the step's transaction; returns rows as objects. */
  query(statement, params = []) {
    let rows;
    try {
      rows = sqlApi.query(statement, params.map(toSql));
    } catch (e) {
      throw sqlError(e);
    }
    return rows.rows.map((r) => Object.fromEntries(rows.columns.map((c, i) => [c, fromSql(r[i])])));
  }
  /** Writes a log line ('trace' | 'debug' | 'info' | 'warn' | 'error'). */
  log(level, message) {
    context.log(LEVELS.includes(level) ? level : 'info', String(message));
  }
  /** Writes an info log line. */
  info(message) { context.log('info', String(message)); }

  /**
   * Sets the HTTP status `acidic serve` answers this run's request with, if
   * this step commits (a finished run's default is 201) or fails the run for
   * good (default 500): 402 for a declined card, say. 200 to 599.
   */
  setHttpStatus(status) { context.setHttpStatus(Number(status) & 0xffff); }
  /** The outcome that ends the run now with `result`. */
  finish(result) { return { tag: 'finish', val: jsonText(result, 'the result') }; }
  /** The outcome that commits and runs this step again. */
  repeat() { return REPEAT; }
}

function describe(e) {
  if (e instanceof Error) return `${e.name}: ${e.message}${e.stack ? `\n${e.stack}` : ''}`;
  try {
    const text = JSON.stringify(e);
    if (typeof text === 'string') return text;
  } catch {
    // fall through
  }
  return String(e);
}

/** Wraps a step function `(cx) => outcome` as the component's `run` export.
 *  It returns nothing (continue), `cx.finish(v)` or `cx.repeat()`. */
export function step(fn) {
  return function run(input) {
    let out;
    try {
      out = fn(new Ctx(input));
    } catch (e) {
      if (e instanceof StepError) throw { message: e.message, retryable: e.retryable };
      throw { message: describe(e), retryable: true };
    }
    if (out === undefined || out === null) return CONTINUE;
    if (out.tag === 'continue' || out.tag === 'repeat') return out;
    if (out.tag === 'finish' && typeof out.val === 'string') return out;
    throw { message: `a step returns nothing, cx.finish(value) or cx.repeat(), not ${describe(out)}`, retryable: false };
  };
}
