// Load test of `quarrel serve`: 32 concurrent streaming clients send 400
// requests in all, some disconnect at random, and a burst of malformed
// requests arrives in the middle. Every well-formed request must return the
// same text as a solo greedy run (batching must not change results) or a 503
// when the queue is full; afterwards the server must be healthy, idle, and
// back near its memory baseline.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { client, metricValue, metrics, rawPost, rssKiB, sleep, startServer } from "./harness.mjs";

const CLIENTS = 32;
const TOTAL = 400;
const MAX_TOKENS = 12;
const DISCONNECT_RATE = 0.1;
const PROMPTS = [
  "And God said",
  "In the beginning",
  "And the LORD spake unto Moses, saying",
  "And the LORD said unto",
  "Blessed are the",
  "And it came to pass",
  "Thou shalt not",
  "The LORD is my shepherd",
];

// Deterministic pseudo-random numbers, so a failure can be replayed.
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MALFORMED = [
  "{",
  "",
  "null",
  "[]",
  '{"prompt": NaN}',
  '{"prompt": "x", "max_tokens": -5}',
  '{"prompt": "x", "max_tokens": 1e400}',
  '{"prompt": "x", "max_tokens": 99999999999999999999999}',
  '{"prompt": "x", "temperature": "warm"}',
  '{"prompt": "x", "n": 4}',
  '{"prompt": [-1, 2]}',
  '{"prompt": [[1], [2]]}',
  '{"prompt": "x", "stop": ["a", 5]}',
  '{"messages": [{"role": "user", "content": "\\ud800"}]}',
  '{"prompt": "\\u0000\\uffff", "max_tokens": 0}',
  "[".repeat(50000) + "]".repeat(50000),
  '{"prompt": "x", "logprobs": -1}',
  Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]),
];

async function streamOnce(ai, prompt, disconnectAfter) {
  const stream = await ai.completions.create({ prompt, max_tokens: MAX_TOKENS, temperature: 0, stream: true });
  let text = "";
  let n = 0;
  try {
    for await (const c of stream) {
      text += c.choices[0]?.text ?? "";
      if (disconnectAfter !== null && ++n > disconnectAfter) {
        stream.controller.abort();
        return { kind: "disconnected" };
      }
    }
  } catch (e) {
    if (disconnectAfter !== null) return { kind: "disconnected" };
    throw e;
  }
  return { kind: "done", text };
}

describe("quarrel serve under load", () => {
  let server, ai;
  before(async () => {
    server = await startServer(["--parallel", "4", "--max-queue", "12", "--ctx-size", "1024"]);
    ai = client(server);
  });
  after(async () => {
    const { code, signal } = await server.stop();
    assert.equal(code, 0, `exit ${code ?? signal}`);
  });

  it("keeps every answer identical to a solo greedy run, or 503", { timeout: 240000 }, async () => {
    // Solo greedy references, one request at a time.
    const ref = {};
    for (const p of PROMPTS) {
      const r = await ai.completions.create({ prompt: p, max_tokens: MAX_TOKENS, temperature: 0 });
      ref[p] = r.choices[0].text;
    }
    // Warm every worker thread's allocator before taking the memory baseline.
    await Promise.all(
      Array.from({ length: CLIENTS }, (_, i) =>
        streamOnce(ai, PROMPTS[i % PROMPTS.length], null).catch((e) => ({ kind: "error", e })),
      ),
    );
    await sleep(300);
    const rssBefore = rssKiB(server.pid);

    const random = rng(6);
    const counts = { done: 0, busy: 0, disconnected: 0 };
    const failures = [];
    let next = 0;
    let burst = null;
    const worker = async () => {
      while (next < TOTAL) {
        const i = next++;
        if (i === Math.floor(TOTAL / 3)) burst = malformedBurst();
        const prompt = PROMPTS[i % PROMPTS.length];
        const disconnectAfter = random() < DISCONNECT_RATE ? Math.floor(random() * 3) : null;
        try {
          const r = await streamOnce(ai, prompt, disconnectAfter);
          counts[r.kind]++;
          if (r.kind === "done" && r.text !== ref[prompt])
            failures.push(`request ${i} (${prompt}): ${JSON.stringify(r.text)} != ${JSON.stringify(ref[prompt])}`);
        } catch (e) {
          if (e.status === 503) {
            counts.busy++;
            await sleep(100 + random() * 200); // a polite client honours Retry-After, scaled down
          } else {
            failures.push(`request ${i}: ${e.status ?? ""} ${e.message}`);
          }
        }
      }
    };
    const malformedBurst = async () => {
      const results = await Promise.all(
        Array.from({ length: 4 }, () => MALFORMED).flat().map((body) =>
          fetch(server.url + "/v1/completions", { method: "POST", headers: { "content-type": "application/json" }, body })
            .then(async (res) => ({ status: res.status, text: await res.text() })),
        ),
      );
      for (const r of results) {
        if (r.status !== 400) failures.push(`malformed request answered ${r.status}: ${r.text.slice(0, 200)}`);
        else if (!JSON.parse(r.text).error?.message) failures.push(`malformed request without error body: ${r.text}`);
      }
    };
    const t0 = Date.now();
    await Promise.all(Array.from({ length: CLIENTS }, worker));
    await burst;
    const seconds = (Date.now() - t0) / 1000;
    console.log(`load: ${JSON.stringify(counts)} in ${seconds.toFixed(1)} s`);
    assert.deepEqual(failures, []);
    assert.equal(counts.done + counts.busy + counts.disconnected, TOTAL);
    assert.ok(counts.done >= TOTAL / 4, `only ${counts.done} requests completed`);

    // Healthy, idle, and still right.
    const health = await fetch(server.url + "/health");
    assert.equal(health.status, 200);
    let m = "";
    for (let k = 0; k < 100; ++k) {
      m = await metrics(server);
      if (metricValue(m, "quarrel_slots_active") === 0 && metricValue(m, "quarrel_queue_depth") === 0) break;
      await sleep(20);
    }
    assert.equal(metricValue(m, "quarrel_slots_active"), 0);
    assert.equal(metricValue(m, "quarrel_queue_depth"), 0);
    assert.ok(metricValue(m, "quarrel_requests_cancelled_total") > 0);
    // Batching happened: some forward passes carried several sequences.
    const batches = metricValue(m, "quarrel_batch_tokens_count");
    const single = metricValue(m, 'quarrel_batch_tokens_bucket{le="1"}');
    assert.ok(batches - single > 0, "no forward pass batched more than one token");
    const solo = await ai.completions.create({ prompt: PROMPTS[0], max_tokens: MAX_TOKENS, temperature: 0 });
    assert.equal(solo.choices[0].text, ref[PROMPTS[0]]);
    const bad = await rawPost(server, "/v1/completions", "{");
    assert.equal(bad.status, 400);

    await sleep(300);
    const rssAfter = rssKiB(server.pid);
    console.log(`rss: ${rssBefore} KiB before, ${rssAfter} KiB after`);
    // AddressSanitizer keeps freed memory in quarantine: RSS says nothing there
    // (its leak check at exit does, and the exit status must be 0).
    if (!readFileSync(`/proc/${server.pid}/maps`, "utf8").includes("libasan"))
      assert.ok(rssAfter <= rssBefore * 1.25 + 16 * 1024, `RSS grew from ${rssBefore} to ${rssAfter} KiB`);
  });
});
