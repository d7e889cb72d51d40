import { nativeBinding } from '../lib/native';

/**
 * The addon is part of the product: in a normal run a suite that needs it runs, and fails if
 * the addon did not load (a broken build must not show green). Only `DANGA_NO_NATIVE=1` turns
 * it off on purpose; then those suites are replaced by one test showing that the addon is off
 * (spec/no-native.spec.ts checks that its features throw DS_ERR_NATIVE_UNAVAILABLE).
 */
export const NATIVE_OFF = !['', '0', undefined].includes(process.env['DANGA_NO_NATIVE']);

/** `describe` for suites that need the addon (see NATIVE_OFF). */
export function describeNative(name: string, fn: () => void): void {
  if (!NATIVE_OFF) {
    describe(name, fn);
    return;
  }
  describe(`${name} (addon turned off by DANGA_NO_NATIVE)`, () => {
    it('finds the addon off', () => {
      expect(nativeBinding()).toBeUndefined();
    });
  });
}

/** `reusePort` is Node's own from 22.12; before that it needs the addon (so `--workers` does). */
export const REUSEPORT_NEEDS_ADDON = ((): boolean => {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major < 22 || (major === 22 && minor < 12);
})();
