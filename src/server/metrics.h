/* metrics.h - the daemon's counters and latency histograms, rendered as Prometheus text.
 * Thread-safe: every update takes the module's lock (a few per request, not per byte). */
#ifndef SH_METRICS_H
#define SH_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics metrics;

int metrics_new(metrics **out);
void metrics_free(metrics *m);

/* A finished request: endpoint (a route label, e.g. "/v1/messages"), HTTP status. */
void metrics_request(metrics *m, const char *endpoint, int status);
void metrics_tokens(metrics *m, int64_t prompt, int64_t generated, int64_t cached);
void metrics_ttft(metrics *m, double seconds);      /* time to first token */
void metrics_token_gap(metrics *m, double seconds); /* time between generated tokens */
void metrics_stream(metrics *m, int delta);         /* active streams +1 / -1 */

typedef struct {
    int64_t queue_depth;
    int64_t active_jobs;
    uint64_t kv_bytes;
    double kv_used_ratio;
    int model_ready;
} metrics_gauges;

/* Renders everything (gauges supplied by the caller) into a malloc'd string (caller frees). */
char *metrics_render(metrics *m, const metrics_gauges *g);
int64_t metrics_active_streams(metrics *m);
int64_t metrics_total_requests(metrics *m);

#endif
