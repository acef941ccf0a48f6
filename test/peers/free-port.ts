// A TCP port that is free on 127.0.0.1 right now, for peers that cannot listen on port 0 themselves
// (Dovecot takes its ports from a config file). The OS picks it; another process may still take it before
// the peer binds, which is rare enough on a test machine that peers simply fail loudly when it happens.
import net from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('freePort: the server has no TCP address'));
        return;
      }
      server.close((err) => (err ? reject(err) : resolve(address.port)));
    });
  });
}
