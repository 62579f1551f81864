/* chat.h - chat templates (messages -> prompt text) and the streaming tool-call parser.
 *
 * No Jinja engine: the template string from the GGUF (tokenizer.chat_template) is only
 * inspected to recognise which family it belongs to, and the family's rendering is written
 * out in C, byte for byte as the real template renders it. Families:
 *   - ChatML as used by Qwen2 / Qwen2.5 / Qwen3 (<|im_start|>role\n...<|im_end|>\n), with
 *     Hermes-style tools (<tools> in the system prompt, <tool_call> JSON in assistant turns,
 *     <tool_response> in user turns). The default system prompt, if the template has one
 *     (Qwen2.5: "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."), is
 *     read from the template itself. Qwen3-style templates (those mentioning
 *     reasoning_content) also get their <think> handling and enable_thinking switch.
 *   - Llama 3 (<|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>):
 *     the plain 3.0 form, or the 3.1+ form (templates with "Cutting Knowledge Date") with its
 *     system header, tools as indented JSON in the first user message, a tool call as
 *     {"name": ..., "parameters": ...} and tool results as "ipython" turns.
 * Fallback: an unknown or absent template renders as plain ChatML with no default system
 * prompt, and with Hermes-style tools as above.
 * Known gap: Qwen3-Coder's XML tool-call format is rendered and parsed as Hermes JSON.
 *
 * The rendered prompt contains the BOS text (<|begin_of_text|>) where the template has one:
 * tokenize it with add_bos = 0 and parse_special = 1.
 *
 * JSON inside prompts is written as Python's json.dumps does (", " and ": " separators, keys in
 * their given order, non-ASCII as is, shortest round-trip floats), since that is what the
 * templates' tojson produces. */
#ifndef SH_CHAT_H
#define SH_CHAT_H

#include <stddef.h>

/* ---- template recognition ---- */
typedef enum { CHAT_CHATML, CHAT_LLAMA3 } chat_kind;

enum {
    CHAT_F_THINK = 1 << 0,        /* Qwen3: <think> blocks, reasoning_content */
    CHAT_F_ENABLE_THINK = 1 << 1, /* template reads enable_thinking */
    CHAT_F_ARGS_RAW = 1 << 2,     /* tool-call arguments given as a string are emitted as is */
    CHAT_F_LLAMA31 = 1 << 3,      /* Llama 3.1+ system header and tool conventions */
    CHAT_F_KNOWN = 1 << 4         /* recognised (not the fallback) */
};

enum { CHAT_SYSTEM_MAX = 1024 };

typedef struct {
    chat_kind kind;
    unsigned flags;
    char default_system[CHAT_SYSTEM_MAX]; /* "" when the template has none */
} chat_template;

/* Recognise the family of jinja (borrowed; NULL or unknown -> ChatML fallback). Never fails. */
void chat_template_detect(chat_template *t, const char *jinja);
const char *chat_kind_name(chat_kind k); /* "chatml" / "llama3"; static */

/* ---- messages ---- */
typedef enum { CHAT_SYSTEM, CHAT_USER, CHAT_ASSISTANT, CHAT_TOOL } chat_role;

typedef struct {
    const char *id; /* not rendered by these templates; kept for the caller */
    const char *name;
    const char *arguments; /* JSON text (an object normally); NULL = {} */
} chat_tool_call;

/* All strings borrowed; NULL content counts as "". */
typedef struct {
    chat_role role;
    const char *content;
    const char *reasoning_content;    /* assistant, optional (Qwen3 thinking) */
    const chat_tool_call *tool_calls; /* assistant */
    int n_tool_calls;
    const char *tool_call_id; /* tool: the call answered (not rendered by these templates) */
    const char *name;         /* tool: function name (idem) */
} chat_msg;

/* A function tool, rendered as the OpenAI object {"type": "function", "function": {"name",
 * "description" (omitted when NULL), "parameters"}}. parameters is the JSON schema as JSON
 * text (NULL = no "parameters" key); invalid JSON there makes chat_render fail (SH_EINVAL). */
typedef struct {
    const char *name;
    const char *description;
    const char *parameters;
} chat_tool;

typedef struct {
    const chat_tool *tools; /* borrowed; n_tools == 0: no tools section at all */
    int n_tools;
    int add_generation_prompt;
    int disable_thinking;    /* CHAT_F_ENABLE_THINK templates: render as enable_thinking=false
                                (an empty think block after the generation prompt) */
    const char *date_string; /* Llama 3.1+ "Today Date"; NULL = "26 Jul 2024" as the template */
} chat_opts;

enum { CHAT_RENDER_MAX = 64 << 20 };

/* Render msgs[0..n) into the prompt text. *out is NUL-terminated, caller frees; *out_len its
 * length. SH_EFULL beyond CHAT_RENDER_MAX bytes; SH_EINVAL for what the template itself
 * rejects (Llama 3.1: more than one tool call in a message, tools without a user message) or
 * bad tool parameters JSON. opts may be NULL (no tools, no generation prompt). */
int chat_render(const chat_template *t, const chat_msg *msgs, int n_msgs, const chat_opts *opts,
                char **out, size_t *out_len);

/* ---- streaming tool-call parser ---- */
/* Fed the generated text in deltas split anywhere (inside the tags, inside UTF-8 characters);
 * emits plain text as soon as it cannot be part of "<tool_call>" (only an ambiguous tail or an
 * incomplete UTF-8 character is held back), and each <tool_call>{json}</tool_call> as one call
 * event. The call JSON is {"name": ..., "arguments": {...}}; "arguments" may also be a JSON
 * string holding the object, and "parameters" is accepted for it. Anything else - bad JSON, no
 * name, a call never closed, a call longer than the limit - comes out as plain text, tags
 * included: the parser never fails on model output. */
typedef enum { CHAT_EV_TEXT, CHAT_EV_TOOL_CALL } chat_ev_kind;

typedef struct {
    chat_ev_kind kind;
    const char *text; /* TEXT: bytes (not NUL-terminated) */
    size_t len;
    const char *name;      /* TOOL_CALL: NUL-terminated */
    const char *arguments; /* TOOL_CALL: compact JSON text, NUL-terminated */
} chat_event;

/* Everything in ev is borrowed for the duration of the call. A non-zero return stops the
 * feed and is passed back to the feeder. */
typedef int (*chat_event_fn)(void *user, const chat_event *ev);

typedef struct chat_tcp chat_tcp;

enum { CHAT_TCP_CALL_MAX = 1 << 20 }; /* longest tool call kept (bytes between the tags) */

/* Llama 3 models write a call as a bare reply {"name": ..., "parameters": {...}} instead:
 * with t of kind CHAT_LLAMA3, a reply whose first non-blank character is '{' is held back
 * whole and becomes a call at chat_tcp_finish if it parses as one (text otherwise). t NULL or
 * ChatML: the <tool_call> form. t is only read during the call. Caller frees. */
int chat_tcp_new(chat_tcp **out, const chat_template *t);
void chat_tcp_free(chat_tcp *p);
/* Back to the initial state (for reuse across requests). */
void chat_tcp_reset(chat_tcp *p);
/* text borrowed. Returns SH_OK, SH_ENOMEM, or what fn returned. */
int chat_tcp_feed(chat_tcp *p, const char *text, size_t len, chat_event_fn fn, void *user);
/* End of generation: releases everything held as text. */
int chat_tcp_finish(chat_tcp *p, chat_event_fn fn, void *user);

#endif
