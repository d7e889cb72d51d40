import * as net from 'node:net';
import { DangaSocket, Listener, NativeSocket, connect } from '../lib';
import { Echo, runUntil } from './helpers';

afterEach(() => DangaSocket.Reset());

describe('native backend', () => {
  it('echoes through a native listener to a node client', async () => {
    const l = await Listener.listen({ backend: 'native' }, (s) => {
      expect(s).toBeInstanceOf(NativeSocket);
      new Echo(s as unknown as net.Socket);
    });
    const addr = l.address() as net.AddressInfo;
    const c = net.connect(addr.port, '127.0.0.1');
    let got = '';
    c.on('data', (d) => (got += d.toString()));
    c.write('hello native');
    await runUntil(() => got === 'hello native');
    c.destroy();
  });

  it('connects natively and echoes', async () => {
    const l = await Listener.listen(
      { backend: 'native' },
      (s) => new Echo(s as unknown as net.Socket),
    );
    const addr = l.address() as net.AddressInfo;
    const ns = await connect({ host: '127.0.0.1', port: addr.port, backend: 'native' });
    expect(ns.remotePort).toBe(addr.port);
    let got = '';
    class C extends DangaSocket {
      override eventRead(): void {
        const b = this.read(100);
        if (b === null) this.close('eof');
        else got += b.toString();
      }
      override eventErr(): void {}
      override eventHup(): void {}
    }
    const c = new C(ns);
    c.watchRead(true);
    c.write('ping');
    await runUntil(() => got === 'ping');
  });
});
