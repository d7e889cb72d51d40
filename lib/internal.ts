/**
 * Internal symbols shared by the loop and the base class. Not exported from `index.ts`:
 * they keep the loop's view of an object out of the public surface.
 */

/** Readiness bits, the epoll/poll values Danga::Socket uses. */
export const POLLIN = 1;
export const POLLOUT = 4;
export const POLLERR = 8;
export const POLLHUP = 16;

/** `obj[kEvents]()`: the events to dispatch now (interest-filtered IN/OUT, always ERR/HUP). */
export const kEvents = Symbol('danga.events');
/** `obj[kCandidate]`: in the loop's candidate list (a flag bit of the object, read/write). */
export const kCandidate = Symbol('danga.candidate');
/** `obj[kPushback]`: pushed-back chunks not yet read. */
export const kPushback = Symbol('danga.pushback');
/** `obj[kWatchingRead]`: read interest. */
export const kWatchingRead = Symbol('danga.watchingRead');
/** `obj[kFinish](reason)`: the OS handle is gone; settle `whenClosed()`. */
export const kFinish = Symbol('danga.finish');
/** `obj[kHandle]`: the wrapped handle, also while its deferred close is pending. */
export const kHandle = Symbol('danga.handle');
/** `obj[kResetClose]()`: close and destroy at once, reason `'reset'` (used by Reset). */
export const kResetClose = Symbol('danga.resetClose');
/** `obj[kNotify]()`: the descriptor's readiness may have changed (called by its channel). */
export const kNotify = Symbol('danga.notify');
/** `sock[kOwner]`: the object that wraps this handle (undefined once stolen or gone). */
export const kOwner = Symbol('danga.owner');
/** `obj[kCreatedS]`: when the object was made (a small integer: see createdSeconds), for the console. */
export const kCreatedS = Symbol('danga.createdS');
