// A Writable that keeps everything written to it: a job's stdout or stderr, read back as text.
import { Writable } from 'node:stream';

export function collect(): Writable & { text(): string } {
  const chunks: Buffer[] = [];
  const w = new Writable({ write(c, _e, cb) { chunks.push(Buffer.from(c)); cb(); } }) as Writable & { text(): string };
  w.text = () => Buffer.concat(chunks).toString('utf8');
  return w;
}
