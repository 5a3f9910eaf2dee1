/* The polyglot workflow's last step, in C: it reads what the Rust, JS,
 * Python and Go steps left in the run's attributes and finishes the run.
 * The same component serves `polyglot-notify`, the run the Go step staged. */
#include <stdlib.h>
#include <string.h>

#include "acidic.h"

static acidic_outcome report(const acidic_ctx *cx) {
    char *summary = acidic_get("summary"), *top = acidic_get("top");
    if (!summary || !top) return acidic_fatal("`summary` and `top` must be set by the earlier steps");
    char *notify = acidic_get("notify_run");
    acidic_info("reporting %s", summary);
    /* Over HTTP a report answers 200 OK (it creates nothing). */
    acidic_set_http_status(200);
    return acidic_finish(acidic_format("{\"summary\":%s,\"top\":%s,\"notify_run\":%s,\"steps\":%d}",
                                       summary, top, notify ? notify : "null", 5));
}

static acidic_outcome notify(const acidic_ctx *cx) {
    char *top_word = acidic_json_string(acidic_json_member(cx->args, "top_word"));
    int64_t distinct = 0;
    if (!top_word || !acidic_json_i64(acidic_json_member(cx->args, "distinct"), &distinct))
        return acidic_fatal("notify needs `top_word` and `distinct` in its args: %s", cx->args);
    char *quoted = acidic_json_quote(top_word);
    acidic_info("notify: %s is the most frequent of %lld words", top_word, (long long)distinct);
    return acidic_finish(acidic_format("{\"notified\":%s,\"distinct\":%lld}", quoted, (long long)distinct));
}

static acidic_outcome step(const acidic_ctx *cx) {
    if (strcmp(cx->step, "report") == 0) return report(cx);
    if (strcmp(cx->step, "notify") == 0) return notify(cx);
    return acidic_fatal("the C component has no step `%s`", cx->step);
}

ACIDIC_STEP(step)
