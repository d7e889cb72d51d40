import { sprintf } from '../lib/sprintf';

describe('sprintf', () => {
  it.each([
    ['%s-%s', ['a', 'b'], 'a-b'],
    ['%d', [12.9], '12'],
    ['%i', [-3.5], '-3'],
    ['%u', [7], '7'],
    ['%x', [255], 'ff'],
    ['%X', [255], 'FF'],
    ['%05d', [42], '00042'],
    ['%-4s|', ['ab'], 'ab  |'],
    ['%.3f', [Math.PI], '3.142'],
    ['%f', [1], '1.000000'],
    ['100%%', [], '100%'],
    ['%s', [], ''],
    ['%d', ['12abc'], '12'],
    ['%d', ['abc'], '0'],
    ['%s %s', ['only'], 'only '],
    ['%s', ['a', 'surplus'], 'a'],
  ])('formats %j with %j as %j', (fmt, args, out) => {
    expect(sprintf(fmt, args)).toBe(out);
  });
});
