// The public entry of danga-socket. Named exports only; what is not listed here is internal.
export { DangaSocketError } from './errors';
export type { DangaSocketErrorCode } from './errors';
