import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { caught, fdOf } from './helpers';
import { errnoOf } from '../lib/errors';
import {
  POLL_HUP,
  POLL_IN,
  _setAddonPathForTesting,
  createFdPoll,
  getTcpCork,
  nativeBinding,
  requireNative,
  setTcpCork,
} from '../lib/native';
import { SocketAlarm } from '../lib/socket-alarm';
import { describeNative } from './native-mode';

const ADDON = path.join(__dirname, '..', 'build', 'Release', 'danga_socket.node');
const linuxIt = process.platform === 'linux' ? it : it.skip;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
const fds: number[] = [];
const tmpDirs: string[] = [];

afterEach(async () => {
  for (const sock of sockets.splice(0)) sock.destroy();
  await Promise.all(
    servers
      .splice(0)
      .map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
  );
  for (const fd of fds.splice(0)) fs.closeSync(fd);
  for (const dir of tmpDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function listen(server: net.Server, target: number | string): Promise<void> {
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (typeof target === 'number') server.listen(target, '127.0.0.1', resolve);
    else server.listen(target, resolve);
  });
}

/** A connected pair: `client` dialled `server`, which accepted `accepted`. */
async function connectedPair(
  unixPath?: string,
): Promise<{ client: net.Socket; accepted: net.Socket }> {
  let onAccept: (sock: net.Socket) => void = () => undefined;
  const acceptedP = new Promise<net.Socket>((resolve) => (onAccept = resolve));
  const server = net.createServer((sock) => {
    sockets.push(sock);
    onAccept(sock);
  });
  await listen(server, unixPath ?? 0);
  const address = server.address();
  const client =
    unixPath !== undefined
      ? net.connect(unixPath)
      : net.connect(
          typeof address === 'object' && address !== null ? address.port : 0,
          '127.0.0.1',
        );
  sockets.push(client);
  await withTimeout(
    new Promise<void>((resolve) => client.once('connect', resolve)),
    5000,
    'connect',
  );
  return { client, accepted: await withTimeout(acceptedP, 5000, 'accept') };
}

function makeTmpDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-native-'));
  tmpDirs.push(dir);
  return dir;
}

/** A FIFO opened non-blocking at both ends: [readFd, writeFd]. */
function fifo(): [number, number] {
  const file = path.join(makeTmpDir(), 'fifo');
  execFileSync('mkfifo', [file]);
  const readFd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  fds.push(readFd);
  const writeFd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  fds.push(writeFd);
  return [readFd, writeFd];
}

describeNative('nativeBinding', () => {
  afterEach(() => _setAddonPathForTesting(undefined));

  it('loads the built addon once and exposes the typed binding', () => {
    const binding = nativeBinding();
    expect(binding).toBeDefined();
    expect(nativeBinding()).toBe(binding);
    expect(requireNative('test')).toBe(binding);
    expect(typeof binding?.setCork).toBe('function');
    expect(binding?.hasTcpCork).toBe(process.platform === 'linux');
  });

  it('reports a missing addon as undefined, and requireNative explains how to build it', () => {
    _setAddonPathForTesting(path.join(os.tmpdir(), 'no-such-dir', 'danga_socket.node'));
    expect(nativeBinding()).toBeUndefined();
    const err = caught(() => requireNative('SocketAlarm'));
    expect(err.code).toBe('DS_ERR_NATIVE_UNAVAILABLE');
    expect(err.message).toContain('SocketAlarm');
    expect(err.message).toContain('npm rebuild danga-socket');
    expect(err.message).toContain('npx node-gyp rebuild');
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('keeps the core usable without the addon: cork degrades to a flag, the rest throws DS_ERR_NATIVE_UNAVAILABLE', () => {
    _setAddonPathForTesting(path.join(os.tmpdir(), 'no-such-dir', 'danga_socket.node'));
    expect(setTcpCork(0, true)).toBe(false);
    expect(caught(() => getTcpCork(0)).code).toBe('DS_ERR_NATIVE_UNAVAILABLE');
    expect(caught(() => createFdPoll(0, () => undefined)).code).toBe('DS_ERR_NATIVE_UNAVAILABLE');
    expect(caught(() => new SocketAlarm({ socket: 0 })).code).toBe('DS_ERR_NATIVE_UNAVAILABLE');
  });

  it('reports a file that is not the addon as unavailable, with the load error as cause', () => {
    const file = path.join(makeTmpDir(), 'bogus.node');
    fs.writeFileSync(file, 'not a shared object');
    _setAddonPathForTesting(file);
    const err = caught(() => requireNative('OtherFds'));
    expect(err.code).toBe('DS_ERR_NATIVE_UNAVAILABLE');
    expect(err.cause).toBeInstanceOf(Error);
  });
});

describeNative('setTcpCork', () => {
  linuxIt('sets TCP_CORK visibly and delivers the corked data after uncork', async () => {
    const { client, accepted } = await connectedPair();
    const fd = fdOf(accepted);
    expect(getTcpCork(fd)).toBe(false);
    expect(setTcpCork(fd, true)).toBe(true);
    expect(getTcpCork(fd)).toBe(true);
    const received = new Promise<string>((resolve) => {
      let text = '';
      client.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.length >= 11) resolve(text);
      });
    });
    accepted.write('hello ');
    accepted.write('world');
    expect(setTcpCork(fd, false)).toBe(true);
    expect(getTcpCork(fd)).toBe(false);
    expect(await withTimeout(received, 5000, 'corked data')).toBe('hello world');
  });

  linuxIt('throws DS_ERR_SYSCALL with the errno error as cause', async () => {
    const badFd = caught(() => setTcpCork(1_000_000, true));
    expect(badFd.code).toBe('DS_ERR_SYSCALL');
    expect(errnoOf(badFd.cause)).toBe('EBADF');
    expect(badFd.cause).toMatchObject({ syscall: 'setsockopt', errno: -os.constants.errno.EBADF });

    const fileFd = fs.openSync(os.devNull, 'r');
    fds.push(fileFd);
    expect(errnoOf(caught(() => setTcpCork(fileFd, true)).cause)).toBe('ENOTSOCK');

    const { client } = await connectedPair(path.join(makeTmpDir(), 'sock'));
    expect(['EOPNOTSUPP', 'ENOPROTOOPT']).toContain(
      errnoOf(caught(() => setTcpCork(fdOf(client), true)).cause),
    );
  });

  it('rejects bad arguments with DS_ERR_INVALID_ARG', () => {
    for (const fd of [-1, 1.5, NaN, '3', undefined]) {
      expect(caught(() => setTcpCork(fd as number, true)).code).toBe('DS_ERR_INVALID_ARG');
    }
    expect(caught(() => setTcpCork(0, 1 as unknown as boolean)).code).toBe('DS_ERR_INVALID_ARG');
    expect(caught(() => getTcpCork(-3)).code).toBe('DS_ERR_INVALID_ARG');
  });
});

describeNative('createFdPoll', () => {
  it('reports mask 1 when a FIFO is written to, level-triggered until the data is read', async () => {
    const [readFd, writeFd] = fifo();
    const masks: number[] = [];
    const done = new Promise<void>((resolve) => {
      const poll = createFdPoll(readFd, (mask) => {
        masks.push(mask);
        if (masks.length < 3) return; // not consumed yet: reported again next iteration
        fs.readSync(readFd, Buffer.alloc(16));
        poll.close();
        resolve();
      });
      poll.start(POLL_IN);
      expect(poll.active).toBe(true);
      expect(poll.fd).toBe(readFd);
    });
    fs.writeSync(writeFd, 'x');
    await withTimeout(done, 5000, 'readability');
    expect(masks).toEqual([POLL_IN, POLL_IN, POLL_IN]);
  });

  it('stops reporting after stop() and resumes after start()', async () => {
    const [readFd, writeFd] = fifo();
    let calls = 0;
    const poll = createFdPoll(readFd, () => {
      calls += 1;
      poll.stop();
    });
    poll.start();
    fs.writeSync(writeFd, 'x');
    await withTimeout(
      new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          if (calls === 1) {
            clearInterval(timer);
            resolve();
          }
        }, 5);
      }),
      5000,
      'first report',
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toBe(1);
    expect(poll.active).toBe(false);
    poll.start();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toBe(2);
    poll.close();
    expect(poll.closed).toBe(true);
    poll.close(); // idempotent
    poll.stop(); // harmless after close
  });

  it('reports HUP (16) when asked for it and the writer goes away', async () => {
    const [readFd, writeFd] = fifo();
    const mask = new Promise<number>((resolve) => {
      const poll = createFdPoll(readFd, (m) => {
        poll.close();
        resolve(m);
      });
      poll.start(POLL_IN | POLL_HUP);
    });
    fs.closeSync(writeFd);
    fds.splice(fds.indexOf(writeFd), 1);
    expect((await withTimeout(mask, 5000, 'hang-up')) & POLL_HUP).toBe(POLL_HUP);
  });

  it('refuses a descriptor that a Node handle already watches (EEXIST)', async () => {
    const { accepted } = await connectedPair();
    const err = caught(() => createFdPoll(fdOf(accepted), () => undefined));
    expect(err.code).toBe('DS_ERR_INVALID_ARG');
    expect(errnoOf(err.cause)).toBe('EEXIST');
  });

  it('refuses closed descriptors and regular files', () => {
    expect(errnoOf(caught(() => createFdPoll(1_000_000, () => undefined)).cause)).toBe('EBADF');
    const file = path.join(makeTmpDir(), 'plain');
    fs.writeFileSync(file, 'x');
    const fd = fs.openSync(file, 'r');
    fds.push(fd);
    expect(errnoOf(caught(() => createFdPoll(fd, () => undefined)).cause)).toBe('EPERM');
  });

  it('validates arguments and state', () => {
    expect(caught(() => createFdPoll(-1, () => undefined)).code).toBe('DS_ERR_INVALID_ARG');
    expect(caught(() => createFdPoll(0, 'cb' as unknown as () => void)).code).toBe(
      'DS_ERR_INVALID_ARG',
    );
    const [readFd] = fifo();
    const poll = createFdPoll(readFd, () => undefined);
    expect(caught(() => poll.start(64)).code).toBe('DS_ERR_INVALID_ARG');
    expect(caught(() => poll.start(1.5)).code).toBe('DS_ERR_INVALID_ARG');
    poll.close();
    expect(caught(() => poll.start(POLL_IN)).code).toBe('DS_ERR_CLOSED');
  });

  it('offers ref()/unref(): an unref-ed poll does not keep a process alive, a ref-ed one does', async () => {
    const script = `
      const m = { exports: {} };
      process.dlopen(m, ${JSON.stringify(ADDON)});
      const poll = new m.exports.Poll(0, (mask) => { console.log('mask ' + mask); poll.close(); });
      poll.start(1);
      if (process.argv[1] === 'unref') { poll.unref(); console.log('hasRef ' + poll.hasRef()); }
    `;
    const run = (
      arg: string,
    ): { child: ReturnType<typeof spawn>; output: () => string; exit: Promise<number | null> } => {
      const child = spawn(process.execPath, ['-e', script, arg], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      let output = '';
      child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const exit = new Promise<number | null>((resolve) => child.once('exit', resolve));
      return { child, output: () => output, exit };
    };

    const unrefed = run('unref');
    expect(await withTimeout(unrefed.exit, 10000, 'unref-ed child to exit')).toBe(0);
    expect(unrefed.output()).toBe('hasRef false\n');
    unrefed.child.stdin?.destroy();

    const refed = run('ref');
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(refed.child.exitCode).toBeNull(); // still waiting for its stdin
      refed.child.stdin?.write('x'); // the child's fd 0 is a raw pipe
      expect(await withTimeout(refed.exit, 10000, 'ref-ed child to exit')).toBe(0);
      expect(refed.output()).toBe('mask 1\n');
    } finally {
      refed.child.kill();
      refed.child.stdin?.destroy();
    }
  });
});

describeNative('environment cleanup', () => {
  it('closes polls and cancels alarms of a terminated worker without disturbing this thread', async () => {
    const [readFd] = fifo();
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const net = require('node:net');
      const m = { exports: {} };
      process.dlopen(m, workerData.addon);
      const poll = new m.exports.Poll(workerData.fd, () => {});
      poll.start(1);
      const server = net.createServer((sock) => {
        const alarm = new m.exports.Alarm(sock._handle.fd, 1, [[9, 60]]);
        alarm.start();
        parentPort.postMessage('armed');
      });
      server.listen(0, '127.0.0.1', () => net.connect(server.address().port, '127.0.0.1'));
    `;
    const worker = new Worker(code, { eval: true, workerData: { addon: ADDON, fd: readFd } });
    try {
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          worker.once('message', () => resolve());
          worker.once('error', reject);
        }),
        10000,
        'worker to arm its alarm',
      );
    } finally {
      await withTimeout(worker.terminate(), 10000, 'worker termination');
    }
    // This thread's loop and the shared watcher thread still work.
    const [readFd2, writeFd2] = fifo();
    const reported = new Promise<number>((resolve) => {
      const poll = createFdPoll(readFd2, (mask) => {
        poll.close();
        resolve(mask);
      });
      poll.start();
    });
    fs.writeSync(writeFd2, 'y');
    expect(await withTimeout(reported, 5000, 'poll after worker exit')).toBe(POLL_IN);
  });

  it('lets a worker with an unref-ed poll exit on its own', async () => {
    const [readFd] = fifo();
    const code = `
      const { workerData } = require('node:worker_threads');
      const m = { exports: {} };
      process.dlopen(m, workerData.addon);
      const poll = new m.exports.Poll(workerData.fd, () => {});
      poll.start(1);
      poll.unref();
    `;
    const worker = new Worker(code, { eval: true, workerData: { addon: ADDON, fd: readFd } });
    const exitCode = await withTimeout(
      new Promise<number>((resolve) => worker.once('exit', resolve)),
      10000,
      'worker exit',
    );
    expect(exitCode).toBe(0);
  });
});
