// The public entry of danga-socket. Named exports only; what is not listed here is internal.
export { DangaSocketError } from './errors';
export type { DangaSocketErrorCode } from './errors';
export { DangaSocket, Timer } from './danga-socket';
export type {
  ErrorContext,
  ErrorHandler,
  EventLoopOptions,
  OtherFdCallback,
  PostLoopCallback,
  ProfilingRow,
  WriteData,
  WriterFunc,
} from './danga-socket';
export { NativeSocket } from './native-socket';
export type { Backend } from './internal/backend';
export { Listener } from './listener';
export type { AcceptCallback, ListenOptions } from './listener';
export { ManagementConsole } from './management-console';
export type {
  ConsoleCommand,
  ConsoleCommands,
  ManagementConsoleOptions,
} from './management-console';
export { connect, ConnectError, ResolveError } from './connector';
export type {
  Address,
  ConnectFailure,
  ConnectOptions,
  ConnectSyscall,
  LookupCallback,
  LookupFunction,
  LookupResult,
  PeerLike,
  TcpAddress,
  UnixAddress,
} from './connector';
export { connectDanga } from './connect-danga';
export type { ConnectDangaOptions, DangaSocketClass } from './connect-danga';
export { PersistentConnection, realClock } from './persistent-connection';
export type {
  Clock,
  Connectable,
  ConnectContext,
  ConnectOutcome,
  PersistentConnectionEvent,
  PersistentConnectionOptions,
} from './persistent-connection';
export {
  EVENT_CLOSE,
  EVENT_EOF,
  EVENT_IN,
  EVENT_PRI,
  EVENT_SHUT,
  SocketAlarm,
  socketAlarm,
} from './socket-alarm';
export type {
  CloseTarget,
  NormalizedAction,
  NormalizedPeer,
  PeerAddress,
  ShutdownTarget,
  SignalSpec,
  SocketAlarmAction,
  SocketAlarmOptions,
} from './socket-alarm';
export { StreamSocket } from './stream-socket';
export type { LineOptions, OnReadCallback, StreamSocketOptions } from './stream-socket';
export { AbsoluteTimer, CountdownTimer, PeriodicTimer } from './timers';
export type {
  AbsoluteTimerOptions,
  CountdownTimerOptions,
  PeriodicTimerOptions,
  RescheduleMode,
} from './timers';
export { onSignal } from './signal';
export type { SignalCallback, SignalShortName, SignalWatch } from './signal';
