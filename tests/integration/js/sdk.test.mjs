// The official SDKs against a running shammah daemon (SHAMMAH_URL). Run by tests/integration/daemon.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const base = process.env.SHAMMAH_URL;
const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
const anthropic = new Anthropic({ baseURL: base, apiKey: 'unused', maxRetries: 0 });
const tools = [{
  type: 'function',
  function: {
    name: 'read_file',
    description: 'Read a file',
    parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
  },
}];

test('openai: models list', async () => {
  const list = await openai.models.list();
  assert.ok(list.data.length >= 1);
  assert.equal(typeof list.data[0].id, 'string');
});

test('openai: chat completion with usage', async () => {
  const r = await openai.chat.completions.create({
    model: 'local', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }],
    max_tokens: 8, temperature: 0, seed: 1,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 5);
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('openai: same seed, same answer', async () => {
  const req = { model: 'local', messages: [{ role: 'user', content: 'Tell me something' }], max_tokens: 12, temperature: 0.9, seed: 42 };
  const a = await openai.chat.completions.create(req);
  const b = await openai.chat.completions.create(req);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

test('openai: concurrent requests are batched and answer as they would alone', async () => {
  const req = (i) => ({ model: 'local', messages: [{ role: 'user', content: `Question number ${i}` }], max_tokens: 12, temperature: 0.7, seed: 7 + i });
  const alone = [];
  for (let i = 0; i < 4; i++) alone.push((await openai.chat.completions.create(req(i))).choices[0].message.content);
  const together = await Promise.all([0, 1, 2, 3].map((i) => openai.chat.completions.create(req(i))));
  together.forEach((r, i) => assert.equal(r.choices[0].message.content, alone[i]));
});

test('openai: streaming with include_usage', async () => {
  const stream = await openai.chat.completions.create({
    model: 'local', messages: [{ role: 'user', content: 'Count to five' }], max_tokens: 10,
    temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = '', finish = null, usage = null, roleSeen = false;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) roleSeen = true;
      if (c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.ok(roleSeen);
  assert.ok(['stop', 'length'].includes(finish));
  assert.ok(usage && usage.completion_tokens >= 1);
});

test('openai: forced tool call comes back as tool_calls', async () => {
  const r = await openai.chat.completions.create({
    model: 'local', messages: [{ role: 'user', content: 'Read /etc/hostname' }], tools,
    tool_choice: { type: 'function', function: { name: 'read_file' } }, max_tokens: 64, temperature: 0,
  });
  const m = r.choices[0].message;
  // A random-weight model may not close the call within max_tokens; then the text comes back.
  if (r.choices[0].finish_reason === 'tool_calls') {
    assert.equal(m.tool_calls[0].function.name, 'read_file');
    JSON.parse(m.tool_calls[0].function.arguments);
  } else {
    assert.equal(typeof m.content, 'string');
  }
});

test('openai: tool results in the conversation are accepted', async () => {
  const r = await openai.chat.completions.create({
    model: 'local', tools, max_tokens: 4, temperature: 0,
    messages: [
      { role: 'user', content: 'Read /etc/hostname' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'read_file', arguments: '{"path":"/etc/hostname"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'myhost' },
    ],
  });
  assert.equal(r.choices.length, 1);
});

test('openai: errors are APIError with status 400', async () => {
  await assert.rejects(
    openai.chat.completions.create({ model: 'local', messages: [] }),
    (e) => e instanceof OpenAI.APIError && e.status === 400);
  await assert.rejects(
    openai.chat.completions.create({ model: 'local', messages: [{ role: 'wizard', content: 'x' }] }),
    (e) => e.status === 400);
  await assert.rejects(
    openai.chat.completions.create({ model: 'local', n: 3, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 400 && /n/.test(e.message));
});

test('openai: response_format json_object gives valid JSON', async () => {
  const r = await openai.chat.completions.create({
    model: 'local', messages: [{ role: 'user', content: 'Describe a cat as JSON' }], max_tokens: 200,
    temperature: 0.8, seed: 3, response_format: { type: 'json_object' },
  });
  const text = r.choices[0].message.content;
  if (r.choices[0].finish_reason === 'stop') {
    const v = JSON.parse(text);
    assert.equal(typeof v, 'object');
    assert.ok(!Array.isArray(v));
  } else {
    // cut by max_tokens: still a valid prefix of an object
    assert.ok(text.trimStart().startsWith('{'));
  }
});

test('openai: completions', async () => {
  const r = await openai.completions.create({ model: 'local', prompt: 'Once upon a time', max_tokens: 6, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
});

test('anthropic: message', async () => {
  const m = await anthropic.messages.create({
    model: 'local', max_tokens: 8, system: 'Be brief.', messages: [{ role: 'user', content: 'Hello' }], temperature: 0,
  });
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.ok(m.id.startsWith('msg_'));
  assert.ok(['end_turn', 'max_tokens', 'stop_sequence'].includes(m.stop_reason));
  assert.ok(m.usage.input_tokens > 3 && m.usage.output_tokens >= 1);
});

test('anthropic: streaming events in order', async () => {
  const stream = anthropic.messages.stream({
    model: 'local', max_tokens: 10, messages: [{ role: 'user', content: 'Say hi' }], temperature: 0,
  });
  const types = [];
  for await (const ev of stream) types.push(ev.type);
  const final = await stream.finalMessage();
  assert.equal(types[0], 'message_start');
  assert.equal(types[types.length - 1], 'message_stop');
  assert.ok(types.includes('message_delta'));
  assert.ok(final.usage.output_tokens >= 1);
});

test('anthropic: forced tool use', async () => {
  const m = await anthropic.messages.create({
    model: 'local', max_tokens: 64, temperature: 0, messages: [{ role: 'user', content: 'Read /etc/hostname' }],
    tools: [{ name: 'read_file', description: 'Read a file', input_schema: tools[0].function.parameters }],
    tool_choice: { type: 'tool', name: 'read_file' },
  });
  if (m.stop_reason === 'tool_use') {
    const b = m.content.find((c) => c.type === 'tool_use');
    assert.equal(b.name, 'read_file');
    assert.equal(typeof b.input, 'object');
  } else {
    assert.ok(m.content.every((c) => c.type === 'text'));
  }
});

test('anthropic: count tokens', async () => {
  const r = await anthropic.messages.countTokens({ model: 'local', messages: [{ role: 'user', content: 'Hello world' }] });
  assert.ok(r.input_tokens > 2);
});

test('anthropic: errors', async () => {
  await assert.rejects(
    anthropic.messages.create({ model: 'local', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof Anthropic.APIError && e.status === 400);
  await assert.rejects(
    anthropic.messages.create({ model: 'local', max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] }] }),
    (e) => e.status === 400 && /image/i.test(e.message));
});
