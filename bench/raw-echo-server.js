#!/usr/bin/env node
'use strict';
// The baseline: a plain Node `net` echo server ('data' → write, pause on backpressure, TCP_NODELAY).
const net = require('node:net');

const port = Number(process.argv[2] ?? 0);
const server = net.createServer({ noDelay: true }, (sock) => {
  sock.setNoDelay(true);
  sock.on('data', (chunk) => {
    if (!sock.write(chunk)) {
      sock.pause();
      sock.once('drain', () => sock.resume());
    }
  });
  sock.on('end', () => sock.end());
  sock.on('error', () => sock.destroy());
});
server.listen({ port, host: '127.0.0.1', backlog: 1024 }, () => {
  const a = server.address();
  process.stdout.write(`listening on ${a.address}:${a.port}\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
