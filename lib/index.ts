// The public entry of danga-socket. Named exports only; what is not listed here is internal.
export { DangaSocketError } from './errors';
export type { DangaSocketErrorCode } from './errors';
export { DangaSocket, Timer } from './danga-socket';
export type {
  ErrorContext,
  ErrorHandler,
  OtherFdCallback,
  PostLoopCallback,
  ProfilingRow,
  WriteData,
  WriterFunc,
} from './danga-socket';
export { Listener } from './listener';
export type { AcceptCallback, ListenOptions } from './listener';
