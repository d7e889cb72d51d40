import * as net from 'node:net';
import { DangaSocket, Listener } from '../lib';

afterEach(() => DangaSocket.Reset());

describe('t/10 events: listener, client and pushback', () => {
  it('reads Hello / lo / Hel / lo / !\\n in the reference order', async () => {
    const reads: string[] = [];
    let acc = '';
    let port = 0;
    class Server extends DangaSocket {
      constructor(s: net.Socket) {
        super(s);
        this.watchRead(true);
      }
      step = 0;
      override eventRead(): void {
        const take = (n: number): string => {
          const b = this.read(n);
          const s = b === null ? '<eof>' : b.toString();
          reads.push(s);
          return s;
        };
        switch (this.step++) {
          case 0:
            acc += take(5);
            this.pushBackRead('lo');
            break;
          case 1:
            take(3);
            this.pushBackRead('Hello');
            break;
          case 2:
            take(3);
            take(500);
            break;
          default:
            acc += take(500);
            if (acc.endsWith('\n')) this.watchRead(false);
        }
      }
    }
    class Client extends DangaSocket {
      override eventWrite(): void {
        this.write('Hello!\n');
        this.watchWrite(false);
      }
    }
    let iter = 0;
    DangaSocket.SetLoopTimeout(150);
    DangaSocket.SetPostLoopCallback(() => {
      iter++;
      if (iter === 1) {
        void Listener.listen({ port: 0 }, (s) => new Server(s)).then((l) => {
          port = (l.address() as net.AddressInfo).port;
        });
      }
      if (iter >= 3 && port !== 0 && DangaSocket.WatchedSockets() === 1) {
        const c = new Client(net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }));
        c.watchWrite(true);
        expect(DangaSocket.WatchedSockets()).toBe(2);
      }
      return !acc.endsWith('\n') && iter < 200;
    });
    await DangaSocket.EventLoop();
    expect(reads).toEqual(['Hello', 'lo', 'Hel', 'lo', '!\n']);
    expect(DangaSocket.WatchedSockets()).toBe(3);
    const map = DangaSocket.DescriptorMap();
    DangaSocket.Reset();
    expect(map.size).toBe(0);
    expect(DangaSocket.DescriptorMap()).toBe(map);
  });
});
