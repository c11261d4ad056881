/**
 * The raw amqplib baseline the benchmarks compare Drover with (bench/throughput.ts, and
 * bench/cluster.ts through the test hosts' server node).
 *
 * @module
 */
import crypto from 'node:crypto';
import amqp from 'amqplib';

/**
 * `n` confirmed persistent messages through a fresh durable queue to two consumers (prefetch 200
 * each), from the first publish until the last delivery is acked; returns messages per second.
 */
export async function rawBulk(url: string, n: number): Promise<number> {
  const queue = `drover.bench.raw.${crypto.randomUUID()}`;
  const pubConn = await amqp.connect(url, { noDelay: true });
  const consumers = await Promise.all([0, 1].map(() => amqp.connect(url, { noDelay: true })));
  try {
    const pub = await pubConn.createConfirmChannel();
    await pub.assertQueue(queue, { durable: true });
    let got = 0;
    let done!: () => void;
    const all = new Promise<void>((r) => (done = r));
    for (const c of consumers) {
      const ch = await c.createChannel();
      await ch.prefetch(200);
      await ch.consume(queue, (m) => {
        if (m === null) return;
        ch.ack(m);
        if (++got === n) done();
      });
    }
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const body = Buffer.from(JSON.stringify({ v: 1, kind: 'continue', processId: i + 1 }));
      if (!pub.sendToQueue(queue, body, { persistent: true })) await new Promise((r) => pub.once('drain', r));
    }
    await pub.waitForConfirms();
    await all;
    const rate = n / ((performance.now() - t0) / 1000);
    await pub.deleteQueue(queue);
    return rate;
  } finally {
    for (const c of [pubConn, ...consumers]) await c.close().catch(() => undefined);
  }
}
