// End-to-end tests of `quarrel serve` with the official OpenAI client:
// completions, chat, streaming with include_usage, stop strings, logprobs,
// seeds, and every error status the server gives.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import OpenAI from "openai";
import { BIN, MODEL, REPO, client, errorBody, metricValue, metrics, rawPost, sleep, startServer } from "./harness.mjs";

const KEY = "sk-test-key";
const AUTH = { authorization: `Bearer ${KEY}` };
const PROMPT = "And God said";

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

describe("quarrel serve", () => {
  let server, ai;
  before(async () => {
    server = await startServer([
      "--parallel", "2", "--ctx-size", "512", "--chat-template", "chatml", "--api-key", KEY,
      "--max-body-bytes", "262144",
    ]);
    ai = client(server, { apiKey: KEY });
  });
  after(async () => {
    const { code, signal } = await server.stop();
    assert.equal(code, 0, `exit ${code ?? signal}`);
  });

  it("answers /health without a key, with no secrets", async () => {
    const res = await fetch(server.url + "/health");
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.deepEqual(JSON.parse(text), { status: "ok" });
    assert.ok(!text.includes(KEY));
  });

  it("lists the model", async () => {
    const models = await ai.models.list();
    assert.equal(models.data.length, 1);
    assert.equal(models.data[0].id, "kjv-7m-q8_0");
  });

  it("completes greedily like `quarrel run`", async () => {
    const r = await ai.completions.create({ model: "kjv", prompt: PROMPT, max_tokens: 16, temperature: 0 });
    const c = r.choices[0];
    assert.equal(r.object, "text_completion");
    assert.equal(c.finish_reason, "length");
    assert.equal(r.usage.completion_tokens, 16);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 16);
    const { stdout } = await promisify(execFile)(BIN, ["run", "-m", MODEL, "-p", PROMPT, "-n", "16", "--temp", "0"], {
      cwd: REPO,
    });
    assert.equal(stdout, PROMPT + c.text + "\n");
  });

  it("reuses a cached prompt prefix", async () => {
    const p = "In the beginning God created the heaven and the earth. And the earth was";
    const a = await ai.completions.create({ prompt: p, max_tokens: 4, temperature: 0 });
    const b = await ai.completions.create({ prompt: p, max_tokens: 4, temperature: 0 });
    assert.equal(a.choices[0].text, b.choices[0].text);
    assert.ok(b.usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(b.usage));
  });

  it("chats with the chatml template", async () => {
    const r = await ai.chat.completions.create({
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "Who made the earth?" },
      ],
      max_tokens: 12,
      temperature: 0,
    });
    assert.equal(r.object, "chat.completion");
    assert.equal(r.choices[0].message.role, "assistant");
    assert.equal(typeof r.choices[0].message.content, "string");
    assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
    assert.ok(r.usage.prompt_tokens > 10);
  });

  it("streams completions with include_usage", async () => {
    const plain = await ai.completions.create({ prompt: PROMPT, max_tokens: 12, temperature: 0 });
    const chunks = await collect(
      await ai.completions.create({
        prompt: PROMPT, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
      }),
    );
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.completion_tokens, 12);
    for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
    assert.equal(chunks.at(-2).choices[0].finish_reason, "length");
    assert.equal(chunks.map((c) => c.choices[0]?.text ?? "").join(""), plain.choices[0].text);
  });

  it("streams chat with include_usage", async () => {
    const req = { messages: [{ role: "user", content: "Say something" }], max_tokens: 10, temperature: 0 };
    const plain = await ai.chat.completions.create(req);
    const chunks = await collect(
      await ai.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } }),
    );
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    assert.equal(chunks.at(-1).usage.completion_tokens, plain.usage.completion_tokens);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    assert.equal(text, plain.choices[0].message.content);
    assert.equal(chunks.at(-2).choices[0].finish_reason, plain.choices[0].finish_reason);
  });

  it("streams without usage unless asked", async () => {
    const chunks = await collect(await ai.completions.create({ prompt: PROMPT, max_tokens: 3, stream: true }));
    for (const c of chunks) assert.ok(!c.usage);
    assert.ok(chunks.every((c) => c.choices.length === 1));
  });

  it("stops at stop strings across token boundaries and never emits them", async () => {
    const full = await ai.completions.create({ prompt: PROMPT, max_tokens: 24, temperature: 0, logprobs: 0 });
    const text = full.choices[0].text;
    const { tokens, text_offset } = full.choices[0].logprobs;
    // A stop string that starts inside one token and ends inside the next.
    const i = tokens.findIndex((t, k) => k > 2 && t.length >= 2 && tokens[k + 1]?.length >= 2);
    assert.ok(i > 0, `no two long tokens in ${JSON.stringify(tokens)}`);
    const stop = tokens[i].slice(-2) + tokens[i + 1].slice(0, 1);
    const want = text.slice(0, text.indexOf(stop));
    assert.ok(text_offset[i] + tokens[i].length - 2 >= want.length);
    const r = await ai.completions.create({ prompt: PROMPT, max_tokens: 24, temperature: 0, stop: [stop, "zzzz"] });
    assert.equal(r.choices[0].finish_reason, "stop");
    assert.equal(r.choices[0].text, want);
    const chunks = await collect(
      await ai.completions.create({ prompt: PROMPT, max_tokens: 24, temperature: 0, stop, stream: true }),
    );
    const pieces = chunks.map((c) => c.choices[0]?.text ?? "");
    assert.equal(pieces.join(""), want);
    assert.ok(pieces.every((p) => !p.includes(stop)));
    assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
  });

  it("returns completion logprobs in the completions shape", async () => {
    const r = await ai.completions.create({ prompt: PROMPT, max_tokens: 8, temperature: 0, logprobs: 3 });
    const lp = r.choices[0].logprobs;
    assert.equal(lp.tokens.length, 8);
    assert.equal(lp.tokens.join(""), r.choices[0].text);
    assert.equal(lp.token_logprobs.length, 8);
    assert.equal(lp.top_logprobs.length, 8);
    assert.deepEqual(lp.text_offset, lp.tokens.map((_, k) => lp.tokens.slice(0, k).join("").length));
    for (let k = 0; k < 8; ++k) {
      const alts = Object.entries(lp.top_logprobs[k]);
      assert.ok(alts.length >= 1 && alts.length <= 3);
      const best = Math.max(...alts.map(([, v]) => v));
      assert.ok(lp.token_logprobs[k] <= 0);
      assert.ok(Math.abs(lp.token_logprobs[k] - best) < 1e-6, "greedy picks the most likely token");
    }
  });

  it("returns chat logprobs in the chat shape, streamed too", async () => {
    const req = { messages: [{ role: "user", content: "Hi" }], max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 };
    const r = await ai.chat.completions.create(req);
    const content = r.choices[0].logprobs.content;
    assert.equal(content.length, r.usage.completion_tokens - (r.choices[0].finish_reason === "stop" ? 1 : 0));
    for (const e of content) {
      assert.equal(typeof e.token, "string");
      assert.ok(e.logprob <= 0);
      assert.ok(Array.isArray(e.bytes));
      assert.equal(e.top_logprobs.length, 2);
      assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob);
    }
    const chunks = await collect(await ai.chat.completions.create({ ...req, stream: true }));
    const streamed = chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? []);
    assert.deepEqual(streamed.map((e) => e.token), content.map((e) => e.token));
  });

  it("reproduces sampled text with a seed", async () => {
    const req = { prompt: PROMPT, max_tokens: 24, temperature: 1.0, top_p: 0.95, seed: 1234 };
    const a = await ai.completions.create(req);
    const b = await ai.completions.create(req);
    assert.equal(a.choices[0].text, b.choices[0].text);
    const chunks = await collect(await ai.completions.create({ ...req, stream: true }));
    assert.equal(chunks.map((c) => c.choices[0]?.text ?? "").join(""), a.choices[0].text);
    const others = await Promise.all(
      [1, 2, 3].map((s) => ai.completions.create({ ...req, seed: s })),
    );
    assert.ok(others.some((o) => o.choices[0].text !== a.choices[0].text), "different seeds, different text");
  });

  it("ignores unknown fields", async () => {
    const r = await rawPost(server, "/v1/completions", { prompt: PROMPT, max_tokens: 2, frobnicate: { x: 1 }, user: "u" }, AUTH);
    assert.equal(r.status, 200, r.text);
  });

  it("tokenizes and detokenizes", async () => {
    const t = await rawPost(server, "/tokenize", { content: "And God said", with_pieces: true }, AUTH);
    assert.equal(t.status, 200);
    const ids = t.json.tokens.map((x) => x.id);
    assert.ok(ids.length >= 3);
    const d = await rawPost(server, "/detokenize", { tokens: ids }, AUTH);
    assert.equal(d.status, 200);
    assert.equal(d.json.content.trim(), "And God said");
    const bad = await rawPost(server, "/detokenize", { tokens: [1, 99999999] }, AUTH);
    assert.equal(bad.status, 400);
    errorBody(assert, bad);
  });

  it("exports Prometheus metrics", async () => {
    const text = await metrics(server, AUTH);
    assert.ok(metricValue(text, 'quarrel_requests_total{endpoint="/v1/completions",status="200"}') > 0);
    assert.ok(metricValue(text, "quarrel_generated_tokens_total") > 0);
    for (const name of ["quarrel_queue_depth", "quarrel_slots_active", "quarrel_time_to_first_token_seconds_count",
                        "quarrel_token_latency_seconds_count", "quarrel_prompt_tokens_total"])
      assert.ok(Number.isFinite(metricValue(text, name)), name);
  });

  it("writes one structured log line per request", async () => {
    const r = await ai.completions.create({ prompt: PROMPT, max_tokens: 3 });
    await sleep(50);
    const line = server.requestLogs().find((l) => l.id === r.id);
    assert.ok(line, "no log line for " + r.id);
    assert.equal(line.status, 200);
    assert.equal(line.path, "/v1/completions");
    assert.equal(line.completion_tokens, 3);
    assert.ok(line.duration_ms >= 0 && line.ttft_ms >= 0);
  });

  describe("errors", () => {
    const bad = async (body, param, route = "/v1/completions") => {
      const r = await rawPost(server, route, body, AUTH);
      assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)} -> ${r.status} ${r.text}`);
      const e = errorBody(assert, r);
      assert.equal(e.type, "invalid_request_error");
      if (param !== undefined) assert.equal(e.param, param, r.text);
      return e;
    };

    it("400 on malformed JSON and non-objects", async () => {
      for (const body of ["{", "", "[1,2]", '{"prompt": "x",}', "nul", '{"prompt": NaN}', '"just a string"'])
        await bad(body);
    });

    it("400 on wrong types", async () => {
      await bad({ prompt: 123 }, "prompt");
      await bad({ prompt: PROMPT, temperature: "hot" }, "temperature");
      await bad({ prompt: PROMPT, stream: "yes" }, "stream");
      await bad({ prompt: PROMPT, stop: 7 }, "stop");
      await bad({ prompt: [1, "a"] }, "prompt");
      await bad({ messages: "hi" }, "messages", "/v1/chat/completions");
      await bad({ messages: [{ role: "user", content: 5 }] }, "messages", "/v1/chat/completions");
      await bad({ messages: [{ role: "tool", content: "x" }] }, "messages", "/v1/chat/completions");
      await bad({ messages: [{ role: "user", content: "x" }], logprobs: 3 }, "logprobs", "/v1/chat/completions");
    });

    it("400 on out-of-range numbers: negative, huge, fractional, infinite", async () => {
      await bad({ prompt: PROMPT, max_tokens: -1 }, "max_tokens");
      await bad({ prompt: PROMPT, max_tokens: 0 }, "max_tokens");
      await bad({ prompt: PROMPT, max_tokens: 1e30 }, "max_tokens");
      await bad({ prompt: PROMPT, max_tokens: 2.5 }, "max_tokens");
      await bad('{"prompt": "x", "max_tokens": 18446744073709551617}', "max_tokens");
      await bad({ prompt: PROMPT, temperature: -0.1 }, "temperature");
      await bad('{"prompt": "x", "temperature": 1e999}');
      await bad({ prompt: PROMPT, top_p: 1.5 }, "top_p");
      await bad({ prompt: PROMPT, top_k: -3 }, "top_k");
      await bad({ prompt: PROMPT, presence_penalty: 9 }, "presence_penalty");
      await bad({ prompt: PROMPT, logprobs: 99 }, "logprobs");
      await bad({ prompt: [-5] }, "prompt");
      await bad({ prompt: [2 ** 40] }, "prompt");
      await bad({ prompt: [99999] }, "prompt");
    });

    it("400 for n other than 1, and for features the server does not have", async () => {
      await bad({ prompt: PROMPT, n: 2 }, "n");
      await bad({ prompt: PROMPT, n: 0 }, "n");
      await bad({ prompt: PROMPT, echo: true }, "echo");
      await bad({ prompt: PROMPT, logit_bias: { 5: 1 } }, "logit_bias");
      await bad({ messages: [{ role: "user", content: "x" }], tools: [{ type: "function" }] }, "tools", "/v1/chat/completions");
      const ok = await rawPost(server, "/v1/completions", { prompt: PROMPT, n: 1, max_tokens: 1 }, AUTH);
      assert.equal(ok.status, 200);
    });

    it("400 when the prompt plus max_tokens exceeds the context", async () => {
      const e = await bad({ prompt: PROMPT, max_tokens: 1000 }, "max_tokens");
      assert.equal(e.code, "context_length_exceeded");
      const big = "And the LORD spake unto Moses, saying, ".repeat(1300); // ~50 KB
      await bad({ prompt: big, max_tokens: 4 }, "prompt");
      await bad({ messages: [{ role: "user", content: big }] }, "messages", "/v1/chat/completions");
    });

    it("401 without the key or with a wrong one, through the client too", async () => {
      for (const headers of [{}, { authorization: "Bearer wrong" }, { authorization: KEY }, { authorization: `Bearer ${KEY}x` }]) {
        const r = await rawPost(server, "/v1/completions", { prompt: PROMPT }, headers);
        assert.equal(r.status, 401);
        assert.equal(errorBody(assert, r).code, "invalid_api_key");
      }
      const res = await fetch(server.url + "/metrics");
      assert.equal(res.status, 401);
      await assert.rejects(client(server, { apiKey: "nope" }).models.list(), (e) => e instanceof OpenAI.AuthenticationError);
    });

    it("413 above the body limit", async () => {
      const r = await rawPost(server, "/v1/completions", { prompt: "x".repeat(300000) }, AUTH);
      assert.equal(r.status, 413);
      assert.equal(errorBody(assert, r).code, "request_too_large");
      // Through the client as well: the body limit is an error the client can read.
      await assert.rejects(
        client(server, { apiKey: KEY }).completions.create({ prompt: "y".repeat(400000) }),
        (e) => e.status === 413,
      );
    });

    it("404 with an error body for unknown routes", async () => {
      const r = await rawPost(server, "/v1/embeddings", { input: "x" }, AUTH);
      assert.equal(r.status, 404);
      errorBody(assert, r);
    });
  });
});

describe("quarrel serve with one slot and a queue of one", () => {
  let server, ai;
  before(async () => {
    server = await startServer(["--parallel", "1", "--max-queue", "1", "--ctx-size", "1024"]);
    ai = client(server);
  });
  after(async () => {
    const { code, signal } = await server.stop();
    assert.equal(code, 0, `exit ${code ?? signal}`);
  });

  it("answers 503 with Retry-After when the queue is full", async () => {
    // One long request holds the slot (waited for through /metrics, so the
    // scheduler has taken it off the queue); then fifteen at once for the one
    // queue place: one waits, the rest are refused, however fast the machine.
    const first = ai.completions
      .create({ prompt: PROMPT, max_tokens: 900, temperature: 0 })
      .then((r) => ({ status: 200, r }), (e) => ({ status: e.status, e }));
    const t0 = Date.now();
    while (metricValue(await metrics(server), "quarrel_slots_active") !== 1) {
      assert.ok(Date.now() - t0 < 10000, "the first request never took the slot");
      await sleep(2);
    }
    const req = { prompt: PROMPT, max_tokens: 8, temperature: 0 };
    const raw = Array.from({ length: 8 }, () => rawPost(server, "/v1/completions", req));
    const viaClient = Array.from({ length: 7 }, () =>
      ai.completions.create(req).then((r) => ({ status: 200, r }), (e) => ({ status: e.status, e })),
    );
    const results = await Promise.all([first, ...raw, ...viaClient]);
    const busy = results.filter((x) => x.status === 503);
    const done = results.filter((x) => x.status === 200);
    assert.equal(busy.length + done.length, results.length, JSON.stringify(results.map((x) => x.status)));
    assert.ok(busy.length >= 1, "no request was refused");
    assert.ok(done.length >= 2, "the slot and the queue place both serve a request");
    for (const x of busy) {
      if (!x.headers) continue;  // through the client: its error carries the status
      assert.ok(Number(x.headers.get("retry-after")) >= 1);
      assert.equal(errorBody(assert, x).code, "server_busy");
    }
    assert.ok(busy.some((x) => x.e instanceof OpenAI.APIError), "the client sees the 503 as an APIError");
  });

  it("frees the slot of a client that disconnects mid-stream", async () => {
    // 1000 tokens take far longer than reading two chunks and hanging up.
    const stream = await ai.completions.create({ prompt: PROMPT, max_tokens: 1000, temperature: 0, stream: true });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    await it.next();
    const before = metricValue(await metrics(server), "quarrel_requests_cancelled_total");
    stream.controller.abort();
    // The slot is free again within a step or two of the scheduler.
    let active = 1;
    const t0 = Date.now();
    while (Date.now() - t0 < 3000) {
      const m = await metrics(server);
      active = metricValue(m, "quarrel_slots_active");
      if (active === 0 && metricValue(m, "quarrel_requests_cancelled_total") > before) break;
      await sleep(10);
    }
    assert.equal(active, 0);
    const r = await ai.completions.create({ prompt: PROMPT, max_tokens: 2 });
    assert.equal(r.usage.completion_tokens, 2);
  });

  it("refuses chat without a template, naming the fix", async () => {
    const r = await rawPost(server, "/v1/chat/completions", { messages: [{ role: "user", content: "x" }] });
    assert.equal(r.status, 400);
    assert.match(errorBody(assert, r).message, /--chat-template/);
  });

  it("finishes in-flight work and exits 0 on SIGTERM", async () => {
    const stream = await ai.completions.create({ prompt: PROMPT, max_tokens: 10, stream: true });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    server.proc.kill("SIGTERM");
    let finish = null;
    for (;;) {
      const { value, done } = await it.next();
      if (done) break;
      finish = value.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(finish, "length");
    const { code } = await server.exit;
    assert.equal(code, 0);
  });
});
