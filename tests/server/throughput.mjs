// Aggregate generation throughput of `quarrel serve`: single stream
// (--parallel 1, one client) against --parallel N with N concurrent clients,
// on the same prompts, greedy, each configuration repeated.
//
//   node throughput.mjs [--parallel 8] [--requests 16] [--max-tokens 128] [--repeats 3] [--plain]
//                       [-- extra serve args]
//
// Requests stream by default; --plain asks for whole responses, which leaves
// out the per-token cost of server-sent events on both sides.
// Prints tokens per second (mean and standard deviation over the repeats)
// and the ratio. Uses build/quarrel, or QUARREL_BIN.
import { client, metricValue, metrics, startServer } from "./harness.mjs";

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}
const PARALLEL = arg("--parallel", 8);
const REQUESTS = arg("--requests", 16);
const MAX_TOKENS = arg("--max-tokens", 128);
const REPEATS = arg("--repeats", 3);
const STREAM = !process.argv.includes("--plain");
const dash = process.argv.indexOf("--");
const EXTRA = dash > 0 ? process.argv.slice(dash + 1) : [];

const PROMPTS = [
  "And God said",
  "In the beginning",
  "And the LORD spake unto Moses, saying",
  "Blessed are the",
  "And it came to pass",
  "Thou shalt not",
  "The LORD is my shepherd",
  "And Jesus answered and said unto them",
];

async function run(parallel, clients) {
  const server = await startServer(["--parallel", String(parallel), "--ctx-size", String(parallel * 256), ...EXTRA]);
  try {
    const ai = client(server);
    await ai.completions.create({ prompt: "warm up", max_tokens: 4, temperature: 0 });
    const results = [];
    let forward = { seconds: 0, passes: 0, wall: 0 };
    for (let rep = 0; rep < REPEATS; ++rep) {
      let next = 0;
      let tokens = 0;
      const m0 = await metrics(server);
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: clients }, async () => {
          while (next < REQUESTS) {
            const i = next++;
            const req = { prompt: PROMPTS[i % PROMPTS.length], max_tokens: MAX_TOKENS, temperature: 0 };
            if (!STREAM) {
              const r = await ai.completions.create(req);
              tokens += r.usage.completion_tokens;  // after the await: += would read tokens before it
              continue;
            }
            const stream = await ai.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
            for await (const c of stream) if (c.usage) tokens += c.usage.completion_tokens;
          }
        }),
      );
      const wall = (performance.now() - t0) / 1000;
      results.push(tokens / wall);
      const m1 = await metrics(server);
      const delta = (name) => metricValue(m1, name) - metricValue(m0, name);
      forward.seconds += delta("quarrel_forward_seconds_sum");
      forward.passes += delta("quarrel_forward_seconds_count");
      forward.wall += wall;
    }
    return { backend: server.lines.find((l) => l.includes(" on cpu") || l.includes(" on cuda")), results, forward };
  } finally {
    await server.stop();
  }
}

const stats = (xs) => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(xs.length - 1, 1));
  return { mean, sd };
};

const single = await run(1, 1);
const batched = await run(PARALLEL, PARALLEL);
const s = stats(single.results), b = stats(batched.results);
console.log(single.backend);
console.log(`${REQUESTS} ${STREAM ? "streamed" : "plain"} requests x ${MAX_TOKENS} tokens max, greedy, ${REPEATS} repeats`);
console.log(`single stream (--parallel 1, 1 client):   ${s.mean.toFixed(1)} ± ${s.sd.toFixed(1)} t/s`);
console.log(`batched (--parallel ${PARALLEL}, ${PARALLEL} clients):       ${b.mean.toFixed(1)} ± ${b.sd.toFixed(1)} t/s`);
console.log(`ratio: ${(b.mean / s.mean).toFixed(2)}x`);
// Where the time goes: the share of wall time spent in forward passes, and
// the mean time of one pass (the rest of a step is sampling, HTTP and the client).
for (const [name, r] of [["single", single], ["batched", batched]])
  console.log(`${name}: forward passes ${(100 * r.forward.seconds / r.forward.wall).toFixed(0)}% of wall time, ` +
              `${((1000 * r.forward.seconds) / r.forward.passes).toFixed(2)} ms each`);
