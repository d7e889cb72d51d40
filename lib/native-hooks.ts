import { DangaSocketError } from './errors';
import type { OtherFdCallback } from './event-loop';

/**
 * The core's two uses of the native addon: TCP_CORK and raw-descriptor polling.
 * Until the addon is wired in, cork is a recorded flag and OtherFds is unavailable.
 */

/** Apply TCP_CORK to `fd`; throws an errno-style error on failure. */
export function nativeCork(_fd: number, _on: boolean): void {}

/** Install raw-descriptor callbacks (replace = OtherFds, else AddOtherFds). */
export function nativeOtherFds(map: Map<number, OtherFdCallback>, replace: boolean): void {
  if (map.size === 0 && replace) return;
  throw new DangaSocketError(
    'DS_ERR_NATIVE_UNAVAILABLE',
    'OtherFds needs the native addon: run `npm rebuild danga-socket`',
  );
}
