// openai.test.mjs — drives a running `nuri serve` with the official openai
// client: streaming and non-streaming chat and completions, stop strings,
// seeds, usage, and the errors the client maps to its exception classes.
//
//   node tests/server/openai.test.mjs http://127.0.0.1:PORT/v1 API_KEY
//
// tests/test_server.c starts the server and runs this; it prints one line per
// check ("ok NAME" / "not ok NAME: why") and exits 1 when any check failed.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
if (!baseURL) {
  console.error('usage: node openai.test.mjs BASE_URL [API_KEY]');
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey: apiKey || 'none', maxRetries: 0, timeout: 60000 });
const chatMessages = [
  { role: 'system', content: 'You are a poet.' },
  { role: 'user', content: 'The machine' },
];

let failed = 0;
let passed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

async function collectChat(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true });
  let text = '';
  let finish = null;
  let usage = null;
  let sawRole = false;
  let id = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    id = id ?? chunk.id;
    assert.equal(chunk.id, id, 'every chunk carries the same id');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) sawRole = true;
      if (c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish, usage, sawRole, id };
}

async function collectCompletion(params) {
  const stream = await client.completions.create({ ...params, stream: true });
  let text = '';
  let finish = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'text_completion');
    for (const c of chunk.choices) {
      text += c.text ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish };
}

await check('models.list', async () => {
  const list = await client.models.list();
  assert.equal(list.data.length, 1);
  assert.equal(typeof list.data[0].id, 'string');
  assert.equal(list.data[0].object, 'model');
});

let chatText = '';
await check('chat non-streaming', async () => {
  const r = await client.chat.completions.create({ model: 'any', messages: chatMessages, max_tokens: 20, temperature: 0 });
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(typeof r.created, 'number');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0);
  assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 20);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  chatText = r.choices[0].message.content;
});

await check('chat streaming equals non-streaming', async () => {
  const s = await collectChat({ model: 'any', messages: chatMessages, max_tokens: 20, temperature: 0,
                                stream_options: { include_usage: true } });
  assert.ok(s.sawRole, 'first delta carries the role');
  assert.match(s.id, /^chatcmpl-/);
  assert.equal(s.text, chatText);
  assert.ok(['stop', 'length'].includes(s.finish));
  assert.ok(s.usage && s.usage.total_tokens === s.usage.prompt_tokens + s.usage.completion_tokens);
});

let completionText = '';
await check('completions non-streaming', async () => {
  const r = await client.completions.create({ model: 'any', prompt: 'The machine', max_tokens: 40, temperature: 0,
                                              ignore_eos: true });
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 40);
  completionText = r.choices[0].text;
  assert.ok(completionText.length > 20);
});

await check('completions streaming equals non-streaming', async () => {
  const s = await collectCompletion({ model: 'any', prompt: 'The machine', max_tokens: 40, temperature: 0,
                                      ignore_eos: true });
  assert.equal(s.text, completionText);
  assert.equal(s.finish, 'length');
});

await check('stop string spanning tokens', async () => {
  // A stop string from the middle of the known continuation: the reply ends
  // right before it, whatever tokens it was cut across.
  const at = Math.floor(completionText.length / 2);
  const stop = completionText.slice(at, at + 7);
  const expected = completionText.slice(0, completionText.indexOf(stop));
  const r = await client.completions.create({ model: 'any', prompt: 'The machine', max_tokens: 40, temperature: 0,
                                              stop: [stop, 'never-produced'] });
  assert.equal(r.choices[0].text, expected);
  assert.equal(r.choices[0].finish_reason, 'stop');
  const s = await collectCompletion({ model: 'any', prompt: 'The machine', max_tokens: 40, temperature: 0, stop });
  assert.equal(s.text, expected);
  assert.equal(s.finish, 'stop');
});

await check('seeded sampling repeats', async () => {
  const p = { model: 'any', prompt: 'Once', max_tokens: 24, temperature: 0.9, seed: 1234, ignore_eos: true };
  const a = await client.completions.create(p);
  const b = await client.completions.create(p);
  assert.equal(a.choices[0].text, b.choices[0].text);
});

await check('bad request raises BadRequestError', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'any', messages: [] }),
                       (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /messages/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'any', messages: chatMessages, max_tokens: 0 }),
                       (e) => e instanceof OpenAI.BadRequestError);
});

await check('wrong key raises AuthenticationError', async () => {
  const bad = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
});

await check('aborted stream, then the server still answers', async () => {
  const stream = await client.completions.create({ model: 'any', prompt: 'The machine', max_tokens: 200,
                                                   temperature: 0, ignore_eos: true, stream: true });
  let n = 0;
  for await (const chunk of stream) {
    if (++n >= 3) {
      stream.controller.abort();
      break;
    }
  }
  const r = await client.completions.create({ model: 'any', prompt: 'The machine', max_tokens: 8, temperature: 0 });
  assert.ok(r.choices[0].text.length > 0);
});

console.log(`node: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
