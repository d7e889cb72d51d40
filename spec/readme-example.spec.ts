import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import type { Socket } from 'node:net';
import { DangaSocket, Listener } from '../lib';

// The class between the markers is shown verbatim in README.md (checked below).
// README-EXAMPLE-START
class Echo extends DangaSocket {
  constructor(sock: Socket) {
    super(sock);
    this.watchRead(true); // a new object watches nothing
  }

  override eventRead(): void {
    const buf = this.read(64 * 1024); // Buffer, empty Buffer (nothing yet) or null (EOF)
    if (buf === null) {
      this.watchRead(false);
      this.write(() => this.close('eof')); // runs once everything before it is sent
      return;
    }
    this.write(buf);
  }

  override eventErr(): void {
    this.close('error');
  }

  override eventHup(): void {
    this.close('hup');
  }
}
// README-EXAMPLE-END

afterEach(() => DangaSocket.Reset());

describe('README example', () => {
  it('README.md shows the Echo class exactly as tested here', () => {
    const root = path.join(__dirname, '..');
    const spec = fs.readFileSync(path.join(root, 'spec', 'readme-example.spec.ts'), 'utf8');
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    const m = /\/\/ README-EXAMPLE-START\n([\s\S]*?)\/\/ README-EXAMPLE-END/.exec(spec);
    expect(m).not.toBeNull();
    expect(readme).toContain((m as RegExpExecArray)[1]);
  });

  it('echoes a client’s bytes, then closes after flushing on its EOF', async () => {
    const listener = await Listener.listen({ host: '127.0.0.1', port: 0 }, (s) => new Echo(s));
    const { port } = listener.address() as net.AddressInfo;
    let echoed = '';
    let ended = false;
    const client = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    client.on('data', (b: Buffer) => (echoed += b.toString()));
    client.on('end', () => (ended = true));
    client.end('hello\n'); // send, then half-close: the server sees EOF after the data

    const deadline = Date.now() + 5000;
    DangaSocket.SetLoopTimeout(50);
    DangaSocket.SetPostLoopCallback(
      () => !(echoed === 'hello\n' && ended) && Date.now() < deadline,
    );
    await DangaSocket.EventLoop();

    expect(echoed).toBe('hello\n');
    expect(ended).toBe(true);
    // The accepted Echo closed itself; only the listener is left in the map.
    expect([...DangaSocket.DescriptorMap().values()]).toEqual([listener]);
    client.destroy();
  });
});
