/* The `{{name}}` workflow's steps. One component serves both: it looks at
 * cx->step. Everything a step does through the SDK commits with the step,
 * or not at all. Values cross as JSON text; strings the SDK returns are
 * malloc'd and last one call (each step runs in a fresh instance). */
#include <string.h>

#include "acidic.h"

static acidic_outcome run(const acidic_ctx *cx) {
    if (strcmp(cx->step, "greet") == 0) {
        char *name = acidic_json_string(acidic_json_member(cx->args, "name")); /* the run's args */
        if (!name || !*name) return acidic_fatal("name is empty"); /* fails the run, commits nothing */
        acidic_info("greeting %s", name);                          /* kept with the step's record */
        char *greeting = acidic_format("hello, %s", name);
        if (!acidic_set_string("greeting", greeting))              /* an attribute, committed with the step */
            return acidic_retryable("could not set greeting");
        return acidic_continue();                                  /* the next step runs */
    }
    if (strcmp(cx->step, "finish") == 0) {
        const char *greeting = acidic_get("greeting");             /* what greet committed (JSON text) */
        if (!greeting) return acidic_fatal("greet left no greeting");
        return acidic_finish(greeting);                            /* the run's result */
    }
    return acidic_fatal("{{name}} has no step `%s`", cx->step);
}

ACIDIC_STEP(run)
