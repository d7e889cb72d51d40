/**
 * Every error the library raises is a `DangaSocketError` with a stable `code`.
 * The code is the contract; messages may change between releases.
 */
export type DangaSocketErrorCode =
  /** An argument has the wrong type or an impossible value. */
  | 'DS_ERR_INVALID_ARG'
  /** The socket is already wrapped by an open `DangaSocket`. */
  | 'DS_ERR_ALREADY_WRAPPED'
  /** A base-class hook (`eventRead`/`eventErr`/`eventHup`) was not overridden but was called. */
  | 'DS_ERR_UNHANDLED_EVENT'
  /** `EventLoop()` was called while it is already running. */
  | 'DS_ERR_LOOP_RUNNING'
  /** The native addon is not built or failed to load. */
  | 'DS_ERR_NATIVE_UNAVAILABLE'
  /** Listening failed (address in use, permission, ...). */
  | 'DS_ERR_LISTEN'
  /** Name resolution failed during `connect()`. */
  | 'DS_ERR_RESOLVE'
  /** Every connection attempt failed; `errors` holds each attempt's error. */
  | 'DS_ERR_CONNECT'
  /** The address list to connect to was empty. */
  | 'DS_ERR_NO_ADDRESS'
  /** An operation exceeded its time limit. */
  | 'DS_ERR_TIMEOUT'
  /** An operation was aborted through its `AbortSignal`. */
  | 'DS_ERR_ABORTED'
  /** The object was closed before the operation could finish. */
  | 'DS_ERR_CLOSED'
  /** A system call in the native addon failed; `cause` holds the errno error. */
  | 'DS_ERR_SYSCALL'
  /** The TLS handshake of `connect({ tls })` failed; `cause` holds the TLS error. */
  | 'DS_ERR_TLS'
  /** A connection's PROXY protocol header was missing, malformed, oversized or late. */
  | 'DS_ERR_PROXY_PROTOCOL';

/** The one error class of the library. `cause` holds the underlying OS or user error. */
export class DangaSocketError extends Error {
  readonly code: DangaSocketErrorCode;
  /** The underlying error, if any (declared here too, for consumers on `lib` below ES2022). */
  declare cause?: unknown;

  // `{ cause }` rather than ES2022's `ErrorOptions`: the shipped .d.ts need only ES2020.
  constructor(code: DangaSocketErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Shorthand for the most common error: a bad argument to a public function. */
export function invalidArg(message: string): DangaSocketError {
  return new DangaSocketError('DS_ERR_INVALID_ARG', message);
}

/** The errno-style `code` of an OS error, if it has one. */
export function errnoOf(err: unknown): string | undefined {
  // Duck-typed: errors from another realm (vm contexts, jest) fail `instanceof Error`.
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  return typeof err.code === 'string' ? err.code : undefined;
}

/** Short description of a value for error messages (never the whole value). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'Object'})`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value.slice(0, 40))}`;
  if (typeof value === 'symbol') return value.toString();
  return `${typeof value} ${value as number | boolean | bigint | undefined}`;
}
