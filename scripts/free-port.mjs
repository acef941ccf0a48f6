// Prints a TCP port that is free on 127.0.0.1 right now (the OS picks it).
import net from 'node:net';
const s = net.createServer().listen(0, '127.0.0.1', () => {
  const { port } = s.address();
  s.close(() => console.log(port));
});
