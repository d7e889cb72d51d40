import { loop, type OtherFdCallback } from './event-loop';
import { POLL_ERR, POLL_HUP, POLL_IN, createFdPoll, nativeBinding, requireNative } from './native';

/**
 * The core's two uses of the native addon: TCP_CORK and raw-descriptor polling (OtherFds).
 * Without the addon, cork is a recorded flag and OtherFds throws DS_ERR_NATIVE_UNAVAILABLE.
 */

/** Apply TCP_CORK to `fd` where the addon can; throws the errno-style error on failure. */
export function nativeCork(fd: number, on: boolean): void {
  const binding = nativeBinding();
  if (binding === undefined || !binding.hasTcpCork) return;
  binding.setCork(fd, on);
}

/** Install raw-descriptor callbacks (`replace`: OtherFds, else AddOtherFds); effective at once. */
export function nativeOtherFds(map: Map<number, OtherFdCallback>, replace: boolean): void {
  if (map.size > 0) requireNative('OtherFds');
  if (replace) {
    for (const [fd, watcher] of loop.otherWatchers) {
      if (!map.has(fd)) {
        watcher.close();
        loop.otherWatchers.delete(fd);
        loop.otherFds.delete(fd);
        loop.otherReady.delete(fd);
      }
    }
  }
  for (const [fd, cb] of map) {
    if (!loop.otherWatchers.has(fd)) {
      // Interest is readability; ERR is always reported and HUP asked for, as epoll does.
      const poll = createFdPoll(fd, (mask) => {
        loop.markOtherReady(fd, mask);
        // libuv stops a poll after an error; keep it level-triggered like epoll.
        if (mask & POLL_ERR && loop.otherWatchers.get(fd) === poll) poll.start(POLL_IN | POLL_HUP);
      });
      poll.start(POLL_IN | POLL_HUP);
      // The running loop keeps the process alive; a poll alone must not.
      poll.unref();
      loop.otherWatchers.set(fd, poll);
    }
    loop.otherFds.set(fd, cb);
  }
}
