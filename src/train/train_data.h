/* train_data.h - training examples: chat exchanges -> tokens, and the JSONL file format.
 *
 * The prompt of an example is rendered exactly as the daemon renders a chat request with the
 * same messages (server/local.c: same template, same default system prompt, generation
 * prompt, BOS rule), so what is learned is what is served. The response is the final
 * assistant message's text followed by the template's end-of-turn token (<|im_end|> for
 * ChatML, <|eot_id|> for Llama 3, else the vocabulary's EOT/EOS), which is what the model must
 * produce to stop.
 *
 * JSONL format (one example per line; blank lines and lines starting with '#' are skipped):
 *   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...], "weight": 3}
 *   {"prompt": "...", "response": "...", "weight": 1}            (one user turn)
 * The last message must be the assistant's; "weight" is a number > 0 or "critical" (10),
 * "medium" (3), "good" (1); absent = 1. Optional "system" (string) with prompt/response. */
#ifndef SH_TRAIN_DATA_H
#define SH_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "server/local.h"
#include "train/lora_train.h"

#define TD_MAX_EXAMPLES 1000000
#define TD_MAX_LINE (16u << 20)
#define TD_MAX_MSGS 1024

typedef struct {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} td_msg;

typedef struct {
    lt_example *ex; /* ex[i].tokens owned by the set */
    int n, cap;
    int64_t n_tokens; /* all tokens of all examples */
} td_set;

void td_set_free(td_set *s); /* a zeroed set is empty and valid */

/* Appends the example msgs[0..n) (borrowed; ends with an assistant message) of weight w.
 * SH_EINVAL with a message for what cannot be an example. */
int td_add(td_set *s, const local_model *lm, const td_msg *msgs, int n, float weight);
/* Parses one JSON line (see the format above) and appends it. */
int td_add_json(td_set *s, const local_model *lm, const char *line, size_t len);
/* Reads a JSONL file; errors name the line. */
int td_load(td_set *s, const local_model *lm, const char *path);

/* Parses a weight given as a number or a name; SH_EINVAL when invalid. */
int td_weight_name(const char *name, float *w);

#endif
