import * as fs from 'node:fs';

const MiB = 1024 * 1024;

/** The largest value of a `min default max` sysctl triple, or undefined where unreadable. */
function sysctlMax(file: string): number | undefined {
  try {
    const max = Number(fs.readFileSync(file, 'utf8').trim().split(/\s+/)[2]);
    return Number.isFinite(max) && max > 0 ? max : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A byte count no loopback TCP connection can hold in kernel buffers, measured from this
 * machine's limits (the autotuning maxima of the receive and send buffers) plus 4 MiB for
 * what a Node peer keeps in user space. Write this much to a peer that does not read and
 * part of it is certain to stay queued on our side, whatever the kernel autotunes to.
 */
export function beyondKernelBuffers(): number {
  const rmem = sysctlMax('/proc/sys/net/ipv4/tcp_rmem') ?? 32 * MiB;
  const wmem = sysctlMax('/proc/sys/net/ipv4/tcp_wmem') ?? 32 * MiB;
  return rmem + wmem + 4 * MiB;
}
