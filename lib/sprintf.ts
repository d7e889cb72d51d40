/**
 * A minimal Perl-style `sprintf` for debug output: `%s %d %i %u %x %X %o %e %f %g %c %%`,
 * with flags, width and precision. Surplus arguments are ignored (as in Perl, unlike
 * `util.format`), missing ones format as empty/zero.
 */
const SPEC = /%([-+ 0#]*)(\d+|\*)?(?:\.(\d+|\*))?([sdiuxXoefgc%])/g;

function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'string') {
    // Perl numifies the leading numeric part of a string ('12abc' → 12, 'abc' → 0).
    const m = /^\s*[-+]?(\d+\.?\d*(e[-+]?\d+)?|\.\d+(e[-+]?\d+)?|0x[0-9a-f]+)/i.exec(value);
    return m ? Number(m[0]) : 0;
  }
  return 0;
}

function toStr(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'object' || typeof value === 'function') {
    const s = (value as { toString?: () => string }).toString?.();
    return typeof s === 'string' ? s : Object.prototype.toString.call(value);
  }
  if (typeof value === 'symbol') return value.toString();
  return `${value as number | boolean | bigint}`;
}

export function sprintf(fmt: string, args: readonly unknown[]): string {
  let next = 0;
  const take = (): unknown => args[next++];
  return fmt.replace(
    SPEC,
    (
      _m,
      flags: string,
      widthSpec: string | undefined,
      precSpec: string | undefined,
      conv: string,
    ) => {
      if (conv === '%') return '%';
      let width = widthSpec === '*' ? toNumber(take()) : widthSpec ? Number(widthSpec) : 0;
      const precArg = precSpec === '*' ? toNumber(take()) : precSpec ? Number(precSpec) : undefined;
      let left = flags.includes('-');
      if (width < 0) {
        left = true;
        width = -width;
      }
      const arg = take();
      let body: string;
      let sign = '';
      switch (conv) {
        case 's':
          body = toStr(arg);
          if (precArg !== undefined) body = body.slice(0, precArg);
          break;
        case 'c':
          body = String.fromCodePoint(Math.trunc(toNumber(arg)) || 0);
          break;
        case 'd':
        case 'i':
        case 'u':
        case 'x':
        case 'X':
        case 'o': {
          let n = Math.trunc(toNumber(arg));
          if (!Number.isFinite(n)) n = -1;
          if (conv === 'u' && n < 0) n = n + 2 ** 64;
          if (n < 0 && (conv === 'd' || conv === 'i')) {
            sign = '-';
            n = -n;
          } else if (conv === 'd' || conv === 'i') {
            sign = flags.includes('+') ? '+' : flags.includes(' ') ? ' ' : '';
          }
          const radix = conv === 'x' || conv === 'X' ? 16 : conv === 'o' ? 8 : 10;
          body = (n < 0 ? BigInt.asUintN(64, BigInt(n)) : BigInt(n)).toString(radix);
          if (conv === 'X') body = body.toUpperCase();
          if (precArg !== undefined) body = body.padStart(precArg, '0');
          if (flags.includes('#') && n !== 0 && radix !== 10)
            body = (radix === 16 ? (conv === 'X' ? '0X' : '0x') : '0') + body;
          break;
        }
        default: {
          const n = toNumber(arg);
          const p = precArg ?? 6;
          const abs = Math.abs(n);
          body =
            conv === 'f'
              ? abs.toFixed(p)
              : conv === 'e'
                ? abs.toExponential(p).replace(/e([-+])(\d)$/, 'e$10$2')
                : String(Number(abs.toPrecision(p || 1)));
          if (n < 0 || Object.is(n, -0)) sign = '-';
          else sign = flags.includes('+') ? '+' : flags.includes(' ') ? ' ' : '';
        }
      }
      const len = sign.length + body.length;
      if (len >= width) return sign + body;
      if (left) return sign + body + ' '.repeat(width - len);
      if (flags.includes('0') && conv !== 's' && conv !== 'c')
        return sign + '0'.repeat(width - len) + body;
      return ' '.repeat(width - len) + sign + body;
    },
  );
}
