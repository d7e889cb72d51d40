import * as net from 'node:net';
import * as vm from 'node:vm';
import {
  fastAcceptProblem,
  installFastAccept,
  isFastAcceptOn,
  netShapeProblem,
  onconnectionShapeProblem,
  osFd,
  setFastAccept,
  simulateShapeMismatch,
  unsentBytes,
} from '../lib/internal/node-internals';
import { fdOf, netTcpPair } from './helpers';

const ONREAD: net.OnReadOpts = { buffer: Buffer.alloc(1024), callback: () => true };

/** A listening plain `net.Server` on 127.0.0.1 and its port. */
async function listening(options: net.ServerOpts = {}): Promise<[net.Server, number]> {
  const server = net.createServer(options);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return [server, (server.address() as net.AddressInfo).port];
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function onconnectionOf(server: net.Server): unknown {
  return (server as unknown as { _handle: { onconnection: unknown } })._handle.onconnection;
}

/** A function with `src` as its source text (never called). */
function fromSource(src: string): unknown {
  return vm.runInNewContext(`(${src})`);
}

const initiallyOn = isFastAcceptOn();
beforeEach(() => setFastAccept(true));
afterEach(() => {
  setFastAccept(initiallyOn);
  simulateShapeMismatch(false);
});

describe('netShapeProblem', () => {
  it("accepts the running Node's net.Server and net.Socket", () => {
    expect(netShapeProblem(new net.Server(), net.Socket.prototype)).toBeNull();
  });

  it('names a server without a connection count', () => {
    const server = new net.Server();
    delete (server as unknown as { _connections?: number })._connections;
    expect(netShapeProblem(server, net.Socket.prototype)).toMatch(/_connections/);
  });

  it('names a socket whose destroy does not count connections out of its server', () => {
    const proto = Object.create(net.Socket.prototype) as object;
    Object.defineProperty(proto, '_destroy', { value: function _destroy(): void {} });
    expect(netShapeProblem(new net.Server(), proto)).toMatch(/_destroy/);
  });
});

describe('onconnectionShapeProblem', () => {
  let server: net.Server;
  let src: string;
  beforeAll(async () => {
    [server] = await listening();
    src = Function.prototype.toString.call(onconnectionOf(server));
  });
  afterAll(() => closeServer(server));

  it("accepts the running Node's onconnection", () => {
    expect(onconnectionShapeProblem(onconnectionOf(server))).toBeNull();
  });

  it('rejects a function whose source is not available', () => {
    expect(onconnectionShapeProblem(Math.max)).toMatch(/source/);
    expect(onconnectionShapeProblem(undefined)).toMatch(/source/);
  });

  it('rejects an onconnection that reads a server field we do not reproduce', () => {
    const changed = src.replace('pauseOnCreate: self.pauseOnConnect,', '$& tos: self.tos,');
    expect(changed).not.toBe(src);
    expect(onconnectionShapeProblem(fromSource(changed))).toMatch(/tos/);
  });

  it('rejects an onconnection that passes another socket option', () => {
    const changed = src.replace('readable: true,', '$& manualStart: true,');
    expect(changed).not.toBe(src);
    expect(onconnectionShapeProblem(fromSource(changed))).toMatch(/socket options/);
  });

  it('rejects an onconnection that sets another socket field or calls a socket method', () => {
    const field = src.replace('socket._server = self;', '$& socket.accepted = true;');
    expect(onconnectionShapeProblem(fromSource(field))).toMatch(/accepted/);
    const call = src.replace('socket._server = self;', '$& socket.setTOS(1);');
    expect(onconnectionShapeProblem(fromSource(call))).toMatch(/socket methods/);
  });

  it('rejects an onconnection that no longer counts connections', () => {
    const changed = src.replace('self._connections++;', '');
    expect(changed).not.toBe(src);
    expect(onconnectionShapeProblem(fromSource(changed))).not.toBeNull();
  });
});

describe('unsentBytes and osFd', () => {
  it("read the handle's descriptor and write queue", async () => {
    const pair = await netTcpPair();
    try {
      expect(osFd(pair.server)).toBe(fdOf(pair.server));
      expect(unsentBytes(pair.server)).toBe(0);
      pair.client.pause();
      // More than loopback buffers hold: libuv keeps the rest, the stream counts it all.
      const big = Buffer.alloc(16 * 1024 * 1024);
      pair.server.write(big);
      const queued = unsentBytes(pair.server);
      expect(queued).toBeGreaterThan(0);
      expect(queued).toBeLessThan(big.length);
      expect(pair.server.writableLength).toBe(big.length);
    } finally {
      pair.close();
    }
  });

  it("fall back to the stream's writableLength and no descriptor when the shape differs", async () => {
    const pair = await netTcpPair();
    try {
      simulateShapeMismatch(true);
      expect(osFd(pair.server)).toBeUndefined();
      expect(unsentBytes(pair.server)).toBe(0);
      pair.client.pause();
      const big = Buffer.alloc(16 * 1024 * 1024);
      pair.server.write(big);
      expect(unsentBytes(pair.server)).toBe(big.length);
    } finally {
      pair.close();
    }
  });

  it('give a listening server its descriptor, and none once closed', async () => {
    const [server] = await listening();
    const fd = osFd(server);
    expect(typeof fd).toBe('number');
    await closeServer(server);
    expect(osFd(server)).toBeUndefined();
  });
});

describe('installFastAccept', () => {
  it('replaces the accept callback once, and not at all for a server not listening', async () => {
    expect(installFastAccept(new net.Server(), ONREAD, () => {})).toBe(false);
    const [server] = await listening();
    try {
      const before = onconnectionOf(server);
      expect(installFastAccept(server, ONREAD, () => {})).toBe(true);
      const installed = onconnectionOf(server);
      expect(installed).not.toBe(before);
      expect(installFastAccept(server, ONREAD, () => {})).toBe(true);
      expect(onconnectionOf(server)).toBe(installed);
    } finally {
      await closeServer(server);
    }
  });

  it("keeps Node's accept when its onconnection has a shape we do not know", async () => {
    const [server, port] = await listening();
    try {
      const handle = (server as unknown as { _handle: { onconnection: unknown } })._handle;
      const node = handle.onconnection as (this: unknown, err: number, h: unknown) => void;
      // Behaves as Node's, but reads a server field the fast path would not reproduce.
      const foreign = function onconnection(this: unknown, err: number, clientHandle: unknown) {
        const self = server as net.Server & { tosBits?: number };
        void self.tosBits;
        node.call(this, err, clientHandle);
      };
      handle.onconnection = foreign;
      expect(fastAcceptProblem(server)).toMatch(/tosBits/);
      const created: net.Socket[] = [];
      expect(installFastAccept(server, ONREAD, (s) => created.push(s))).toBe(false);
      expect(handle.onconnection).toBe(foreign);
      const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
      const client = net.connect({ port, host: '127.0.0.1' });
      client.write('hello');
      const sock = await accepted;
      const data = await new Promise<string>((resolve) =>
        sock.once('data', (d: Buffer) => resolve(d.toString())),
      );
      expect(data).toBe('hello');
      expect(created).toHaveLength(0);
      sock.destroy();
      client.destroy();
    } finally {
      await closeServer(server);
    }
  });

  it('does nothing when turned off or when a shape mismatch is simulated', async () => {
    const [server] = await listening();
    try {
      const before = onconnectionOf(server);
      setFastAccept(false);
      expect(fastAcceptProblem(server)).toMatch(/DANGA_FAST_ACCEPT/);
      expect(installFastAccept(server, ONREAD, () => {})).toBe(false);
      setFastAccept(true);
      simulateShapeMismatch(true);
      expect(installFastAccept(server, ONREAD, () => {})).toBe(false);
      expect(onconnectionOf(server)).toBe(before);
    } finally {
      await closeServer(server);
    }
  });
});

describe('DANGA_FAST_ACCEPT', () => {
  const saved = process.env['DANGA_FAST_ACCEPT'];
  afterEach(() => {
    if (saved === undefined) delete process.env['DANGA_FAST_ACCEPT'];
    else process.env['DANGA_FAST_ACCEPT'] = saved;
  });

  function loadFresh(): typeof import('../lib/internal/node-internals') {
    let mod: typeof import('../lib/internal/node-internals') | undefined;
    jest.isolateModules(() => {
      mod = jest.requireActual<typeof import('../lib/internal/node-internals')>(
        '../lib/internal/node-internals',
      );
    });
    if (mod === undefined) throw new Error('module not loaded');
    return mod;
  }

  it('=0 turns fast accept off, read once when the module loads', () => {
    process.env['DANGA_FAST_ACCEPT'] = '0';
    const off = loadFresh();
    expect(off.isFastAcceptOn()).toBe(false);
    process.env['DANGA_FAST_ACCEPT'] = '1';
    expect(off.isFastAcceptOn()).toBe(false);
    expect(loadFresh().isFastAcceptOn()).toBe(true);
    delete process.env['DANGA_FAST_ACCEPT'];
    expect(loadFresh().isFastAcceptOn()).toBe(true);
  });
});
