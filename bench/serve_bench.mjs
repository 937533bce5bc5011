// serve_bench.mjs — aggregate generation speed of a running `nuri serve`
// with 1 and with N concurrent streaming requests.
//
//   node bench/serve_bench.mjs [--url http://127.0.0.1:8080] [--concurrency 4]
//        [--tokens 64] [--rounds 3] [--api-key KEY] [--json]
//
// Every request streams a greedy completion of exactly --tokens tokens
// (ignore_eos) for its own short prompt. A round runs one request alone, then
// N at once. Two figures: end-to-end (generated tokens / wall time from
// sending the requests to the last [DONE], prompts included) and generation
// (tokens after each request's first / time from the first streamed token to
// the last [DONE]; the N prompts are evaluated in one step, so their first
// tokens arrive together). Rounds alternate single and concurrent runs so
// that machine load hits both alike.
// Plain fetch (Node 18+): no npm packages needed.

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const url = opt('url', 'http://127.0.0.1:8080');
const concurrency = Number(opt('concurrency', 4));
const tokens = Number(opt('tokens', 64));
const rounds = Number(opt('rounds', 3));
const apiKey = opt('api-key', null);
const asJson = args.includes('--json');

const prompts = [
  'The history of the printing press',
  'A recipe for bread begins with',
  'In the middle of the ocean there',
  'The rules of chess say that',
  'Once upon a time in a quiet village',
  'The theory of relativity explains',
  'My favourite programming language is',
  'Rain fell on the city while',
];

// Streams one completion; returns {tokens, ttft, end} (seconds since t0 to
// the first text and to the end).
async function streamOne(prompt, t0) {
  const headers = { 'Content-Type': 'application/json' };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ prompt, max_tokens: tokens, temperature: 0, ignore_eos: true, stream: true,
                           stream_options: { include_usage: true } }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const decoder = new TextDecoder();
  let buffer = '';
  let ttft = null;
  let generated = null;
  for await (const part of res.body) {
    buffer += decoder.decode(part, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
      const chunk = JSON.parse(event.slice(6));
      if (chunk.error) throw new Error(chunk.error.message);
      if (ttft === null && chunk.choices?.[0]?.text) ttft = (performance.now() - t0) / 1000;
      if (chunk.usage) generated = chunk.usage.completion_tokens;
    }
  }
  if (generated !== tokens) throw new Error(`expected ${tokens} tokens, got ${generated}`);
  return { tokens: generated, ttft, end: (performance.now() - t0) / 1000 };
}

async function run(n, round) {
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => streamOne(prompts[(i + round) % prompts.length], t0)));
  const wall = (performance.now() - t0) / 1000;
  const total = results.reduce((a, r) => a + r.tokens, 0);
  const firstToken = Math.min(...results.map((r) => r.ttft ?? wall));
  return { n, wall, tokensPerSecond: total / wall, genPerSecond: (total - n) / (wall - firstToken),
           ttft: Math.max(...results.map((r) => r.ttft ?? wall)) };
}

const single = [];
const multi = [];
await run(1, 0); // warm-up: page in the weights
for (let r = 0; r < rounds; r++) {
  single.push(await run(1, r));
  multi.push(await run(concurrency, r));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round2 = (x) => Number(x.toFixed(2));
const s = median(single.map((x) => x.tokensPerSecond));
const m = median(multi.map((x) => x.tokensPerSecond));
const sg = median(single.map((x) => x.genPerSecond));
const mg = median(multi.map((x) => x.genPerSecond));
const summary = {
  tokens_per_request: tokens,
  rounds,
  concurrent: concurrency,
  single_tps: round2(s),
  concurrent_tps: round2(m),
  speedup: round2(m / s),
  single_gen_tps: round2(sg),
  concurrent_gen_tps: round2(mg),
  gen_speedup: round2(mg / sg),
  single_runs: single.map((x) => round2(x.tokensPerSecond)),
  concurrent_runs: multi.map((x) => round2(x.tokensPerSecond)),
  concurrent_ttft_s: round2(median(multi.map((x) => x.ttft))),
};
if (asJson) {
  console.log(JSON.stringify(summary));
} else {
  console.log(`| requests | end-to-end t/s | generation t/s | end-to-end runs |`);
  console.log('| ---: | ---: | ---: | --- |');
  console.log(`| 1 | ${summary.single_tps} | ${summary.single_gen_tps} | ${summary.single_runs.join(', ')} |`);
  console.log(`| ${concurrency} | ${summary.concurrent_tps} | ${summary.concurrent_gen_tps} | ` +
              `${summary.concurrent_runs.join(', ')} |`);
  console.log(`\nspeed-up: ${summary.speedup}x end-to-end, ${summary.gen_speedup}x generation ` +
              `(${tokens} tokens per request, medians of ${rounds} rounds)`);
}
