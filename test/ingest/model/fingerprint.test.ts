import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fingerprint, parseStack } from '../../../ingest/model/index.ts';

const stack = (name: string) =>
  readFileSync(new URL(`./fixtures/stacks/${name}.txt`, import.meta.url), 'utf8');

describe('stack fingerprints on real traces', () => {
  it('Node.js: the same throw for another order, after a deploy that moved lines and paths, shares a fingerprint', () => {
    expect(fingerprint(stack('node-checkout-123'))).toBe(
      fingerprint(stack('node-checkout-456-next-deploy')),
    );
  });

  it('Node.js: a throw from a different function does not', () => {
    expect(fingerprint(stack('node-checkout-123'))).not.toBe(fingerprint(stack('node-refund-123')));
  });

  it('Java: same bug, different order ids (also in the wrapping exception) share; another cause does not', () => {
    expect(fingerprint(stack('java-checkout-123'))).toBe(fingerprint(stack('java-checkout-456')));
    expect(fingerprint(stack('java-checkout-123'))).not.toBe(fingerprint(stack('java-refund')));
  });

  it('Python: same bug shares, another function does not', () => {
    expect(fingerprint(stack('python-checkout-123'))).toBe(
      fingerprint(stack('python-checkout-456')),
    );
    expect(fingerprint(stack('python-checkout-123'))).not.toBe(fingerprint(stack('python-refund')));
  });

  it('parses frames and the error type of each runtime', () => {
    const node = parseStack(stack('node-checkout-123'));
    expect(node.type).toBe('Error');
    expect(node.frames.slice(0, 2).map((f) => f.fn)).toEqual(['chargeCard', 'checkout']);
    const java = parseStack(stack('java-checkout-123'));
    expect(java.type).toBe('java.lang.RuntimeException');
    expect(java.frames.map((f) => f.fn)).toContain('Pay.charge');
    const py = parseStack(stack('python-refund'));
    expect(py.type).toBe('KeyError');
    expect(py.frames.map((f) => f.fn)).toEqual(['<module>', 'refund']);
  });

  it('ignores runtime-internal frames, so a Node.js upgrade keeps fingerprints', () => {
    const upgraded = stack('node-checkout-123').replace(
      /node:internal\/modules\/cjs\/loader:\d+:\d+/g,
      'node:internal/modules/cjs/loader:9999:1',
    );
    const fewerInternals = stack('node-checkout-123')
      .split('\n')
      .filter((l) => !l.includes('Module.load'))
      .join('\n');
    const base = fingerprint(stack('node-checkout-123'));
    expect(fingerprint(upgraded)).toBe(base);
    expect(fingerprint(fewerInternals)).toBe(base);
  });

  it('collapses recursion depth and masks addresses and uuids', () => {
    const a =
      'Error: x\n    at walk (/app/tree.js:3:9)\n    at walk (/app/tree.js:3:9)\n    at main (/app/index.js:1:1)';
    const b = 'Error: y\n    at walk (/app/tree.js:3:9)\n    at main (/app/index.js:1:1)';
    expect(fingerprint(a)).toBe(fingerprint(b));
    const c = 'Error: x\n    at handler (/tmp/9b2c6c1e-5a1e-4c6f-9a63-0e1f2d3c4b5a/app.js:1:1)';
    const d = 'Error: x\n    at handler (/tmp/0f2c6c1e-5a1e-4c6f-9a63-0e1f2d3c4b5b/app.js:1:1)';
    expect(fingerprint(c)).toBe(fingerprint(d));
  });

  it('Go panics: same function, different arguments and offsets, share', () => {
    const a =
      'panic: boom\n\ngoroutine 1 [running]:\nmain.charge(0xc000012345)\n\t/app/main.go:10 +0x1d\nmain.main()\n\t/app/main.go:20 +0x25';
    const b =
      'panic: boom\n\ngoroutine 7 [running]:\nmain.charge(0xc000099999)\n\t/app/main.go:12 +0x2f\nmain.main()\n\t/app/main.go:22 +0x25';
    const c =
      'panic: boom\n\ngoroutine 1 [running]:\nmain.refund(0xc000012345)\n\t/app/main.go:30 +0x1d\nmain.main()\n\t/app/main.go:20 +0x25';
    expect(fingerprint(a)).toBe(fingerprint(b));
    expect(fingerprint(a)).not.toBe(fingerprint(c));
  });
});

describe('Go tracebacks as Go 1.17+ prints them', () => {
  // Arguments as `{0xc000…, 0x3}` and `0x9f2a40?`, "created by … in goroutine N".
  const panicAt = (fn: string, goroutine: number, arg: string, line: number) =>
    [
      'panic: runtime error: invalid memory address or nil pointer dereference',
      '[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x6b2f4e]',
      '',
      `goroutine ${goroutine} [running]:`,
      `github.com/acme/orders/internal/billing.(*Service).${fn}(0xc0001a2000, {0x9f2a40?, 0xc000${arg}}, 0x3)`,
      `\t/app/internal/billing/service.go:${line} +0x1d`,
      'github.com/acme/orders/internal/api.(*Handler).ServeHTTP(0xc000124000, {0xa1b2c8, 0xc0001b4000}, 0xc0001c8000)',
      `\t/app/internal/api/handler.go:${line + 50} +0x2f4`,
      'net/http.serverHandler.ServeHTTP({0xc000098ea0?}, {0xa1b2c8?, 0xc0001b4000?}, 0x6?)',
      '\t/usr/local/go/src/net/http/server.go:3142 +0x8e',
      'net/http.(*conn).serve(0xc0001a4000, {0xa1c4f8, 0xc000098d80})',
      '\t/usr/local/go/src/net/http/server.go:2044 +0x5e8',
      `created by net/http.(*Server).Serve in goroutine ${goroutine > 1 ? 1 : 7}`,
      '\t/usr/local/go/src/net/http/server.go:3290 +0x4b4',
    ].join('\n');

  it('two different throwing functions get two fingerprints', () => {
    expect(fingerprint(panicAt('Charge', 41, '012345', 88))).not.toBe(
      fingerprint(panicAt('Refund', 41, '012345', 88)),
    );
  });

  it('the same panic in another goroutine, with other addresses and lines, shares one', () => {
    expect(fingerprint(panicAt('Charge', 41, '012345', 88))).toBe(
      fingerprint(panicAt('Charge', 977, '0fe8a0', 91)),
    );
  });

  it('reads file lines with GOTRACEBACK=system frame pointers and no offset', () => {
    const stack =
      'fatal error: x\n\ngoroutine 1 gp=0xc000002380 m=0 mp=0x9f2a40 [running]:\nmain.flush(...)\n\t/app/main.go:10 fp=0xc000057e58 sp=0xc000057e28 pc=0x4383fc';
    expect(parseStack(stack).frames.map((f) => f.fn)).toEqual(['main.flush']);
  });

  it('parses the frames with any argument form, and the creator', () => {
    const fns = parseStack(panicAt('Charge', 41, '012345', 88)).frames.map((f) => f.fn);
    expect(fns).toEqual([
      'github.com/acme/orders/internal/billing.(*Service).Charge',
      'github.com/acme/orders/internal/api.(*Handler).ServeHTTP',
      'net/http.serverHandler.ServeHTTP',
      'net/http.(*conn).serve',
      'created by net/http.(*Server).Serve',
    ]);
  });
});

describe('Java generated class names are ids, not frames', () => {
  const spring = (cglib: string, lambda: string, accessor: number, proxy: number) =>
    [
      'org.springframework.dao.DataIntegrityViolationException: could not execute statement; SQL [n/a]',
      '\tat org.springframework.orm.jpa.vendor.HibernateJpaDialect.convertHibernateAccessException(HibernateJpaDialect.java:290) ~[spring-orm-5.3.31.jar:5.3.31]',
      '\tat com.acme.orders.OrderService.placeOrder(OrderService.java:57) ~[classes/:na]',
      `\tat com.acme.orders.OrderService$$EnhancerBySpringCGLIB$$${cglib}.placeOrder(<generated>) ~[classes/:na]`,
      `\tat com.acme.orders.OrderController$$Lambda$${lambda}.apply(Unknown Source) ~[na:na]`,
      `\tat jdk.internal.reflect.GeneratedMethodAccessor${accessor}.invoke(Unknown Source) ~[na:na]`,
      `\tat com.sun.proxy.$Proxy${proxy}.save(Unknown Source) ~[na:na]`,
      '\tat com.acme.orders.OrderController.create(OrderController.java:31) ~[classes/:na]',
    ].join('\n');

  it('a deploy that renames CGLIB, lambda, accessor and proxy classes keeps the fingerprint', () => {
    expect(fingerprint(spring('8f2a1c3d', '1234/0x0000000800c0b000', 12, 45))).toBe(
      fingerprint(spring('5b7e0a91', '987/0x0000000801a2c440', 873, 212)),
    );
  });

  it('another throwing method does not', () => {
    expect(fingerprint(spring('8f2a1c3d', '1234/0x0000000800c0b000', 12, 45))).not.toBe(
      fingerprint(
        spring('8f2a1c3d', '1234/0x0000000800c0b000', 12, 45).replace(
          'OrderService.placeOrder(OrderService.java:57)',
          'OrderService.cancelOrder(OrderService.java:57)',
        ),
      ),
    );
  });
});

describe('remembered fingerprints', () => {
  it('a stack whose first line is a frame is not answered from the cache for another first frame', () => {
    const rest = '\n\t/app/main.go:10 +0x1d\nmain.main()\n\t/app/main.go:20 +0x25';
    const charge = fingerprint(`main.charge(0xc000012345)${rest}`);
    expect(fingerprint(`main.refund(0xc000012345)${rest}`)).not.toBe(charge);
    const node = '\n    at main (/app/index.js:1:1)';
    expect(fingerprint(`    at charge (/app/pay.js:1:1)${node}`)).not.toBe(
      fingerprint(`    at refund (/app/pay.js:1:1)${node}`),
    );
  });

  it('answers the same as a fresh computation for a long error type', () => {
    const stack = 'Error: x\n    at charge (/app/pay.js:1:1)';
    expect(fingerprint(stack, `${'T'.repeat(300)}a`)).toBe(
      fingerprint(stack, `${'T'.repeat(300)}b`),
    );
  });
});

describe('the error type given with the event', () => {
  it('stands for the raised error type, also when empty, whether or not remembered', () => {
    const stack = 'TypeError: x\n    at charge (/app/pay.js:1:1)';
    const given = fingerprint(stack, '');
    expect(fingerprint(stack)).not.toBe(given);
    expect(fingerprint(stack, '')).toBe(given);
    expect(fingerprint(stack, 'TypeError')).toBe(fingerprint(stack));
  });
});

describe('Python 3.11+ exception groups', () => {
  it('reads frames inside the margins; the group is the raised error', () => {
    const text = readFileSync(
      new URL('./fingerprint-corpus/python-taskgroup-fetch/sync-1.txt', import.meta.url),
      'utf8',
    );
    const parsed = parseStack(text);
    expect(parsed.type).toBe('ExceptionGroup');
    expect(parsed.sections.map((s) => s.type)).toEqual(['ExceptionGroup', 'httpx.HTTPStatusError']);
    expect(parsed.frames.map((f) => f.fn)).toContain('fetch_account');
  });
});
