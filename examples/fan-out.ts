/**
 * Fan-out / fan-in: `examples.sum_of_squares` {n} submits n `examples.square` children, waits for
 * all of them without holding a worker slot, and sums their results.
 *
 * Use it from the CLI (after `npm run build`):
 *   drover config set processes.modules "$PWD/dist/examples/fan-out.js"
 *   drover daemon restart
 *   drover process submit examples.sum_of_squares -i n=500 --wait
 */
import { defineProcess } from '../src/index.js';

/** {x} → {square: x²}. */
export const square = defineProcess<{ x: number }, { square: number }>({
  name: 'examples.square',
  description: 'Squares a number: {x} → {square}.',
  validateInputs: (i) =>
    typeof i === 'object' && i !== null && !Array.isArray(i) && typeof i.x === 'number' ? null : 'expected {x: number}',
  run: (_ctx, { x }) => ({ square: x * x }),
});

/** {n} → {sum: 1² + 2² + … + n²}, computed by n child processes. */
export const sumOfSquares = defineProcess<{ n: number }, { sum: number; children: number }>({
  name: 'examples.sum_of_squares',
  description: 'Submits n examples.square children and sums their results: {n} → {sum}.',
  validateInputs: (i) =>
    typeof i === 'object' && i !== null && !Array.isArray(i) && Number.isInteger(i.n) && (i.n as number) >= 1
      ? null
      : 'expected {n: integer >= 1}',
  async run(ctx, { n }) {
    const ids: number[] = [];
    for (let x = 1; x <= n; x++) ids.push(await ctx.submit('examples.square', { x }));
    ctx.report(`submitted ${n} children`);
    const results = await ctx.waitFor(ids);
    const sum = await ctx.step('sum', () => {
      let s = 0;
      for (const r of results) {
        if (r.state !== 'finished' || r.exitStatus !== 0) throw new Error(`child ${r.id} did not finish: ${r.state}`);
        s += (r.outputs as { square: number }).square;
      }
      return s;
    });
    ctx.report(`sum of squares 1..${n} = ${sum}`);
    return { sum, children: n };
  },
});
