/* The acidic SDK for C steps, over the bindings `wit-bindgen c` generates
 * for the world `acidic:step/step` (`bindings/step.h`, made by the build).
 *
 *   #include "acidic.h"
 *
 *   static acidic_outcome greet(const acidic_ctx *cx) {
 *       char *name = acidic_json_string(acidic_json_member(cx->args, "name")); // the run's args
 *       int64_t n = 0;
 *       acidic_json_i64(acidic_get("greetings"), &n);          // a persisted attribute
 *       acidic_set_i64("greetings", n + 1);                    // committed with the step
 *       if (!name || !*name) return acidic_fatal("name is empty"); // fails the run
 *       return acidic_finish(acidic_json_quote(name));         // or acidic_continue()
 *   }
 *   ACIDIC_STEP(greet)
 *
 * Values cross as JSON text; the acidic_json_* helpers read and write the
 * common cases. Strings the SDK returns are malloc'd and the caller's (a
 * step runs in a fresh instance, so a leak lasts one call). Functions that
 * take JSON text accept NULL as "absent".
 */
#ifndef ACIDIC_H
#define ACIDIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "step.h"

/* What a step sees. Strings are NUL-terminated. */
typedef struct {
    uint64_t run_id;         /* the run's numeric id */
    const char *key;         /* the run's idempotency key */
    const char *workflow;    /* the workflow's name */
    uint32_t workflow_version;
    const char *step;        /* the step being run */
    uint32_t attempt;        /* this step's attempt, from 1 */
    const char *args;        /* the run's args, JSON text */
    const char *step_key;    /* stable across retries: the idempotency key for external APIs */
} acidic_ctx;

enum { ACIDIC_CONTINUE, ACIDIC_FINISH, ACIDIC_REPEAT, ACIDIC_FATAL, ACIDIC_RETRYABLE };

/* What a step answers: an outcome, or an error. */
typedef struct {
    int kind;
    char *text; /* the result's JSON text (ACIDIC_FINISH) or the error message */
} acidic_outcome;

acidic_outcome acidic_continue(void);
acidic_outcome acidic_repeat(void);
/* Ends the run now with `json` (copied; NULL is null). */
acidic_outcome acidic_finish(const char *json);
/* Fails the run now. printf-style. */
acidic_outcome acidic_fatal(const char *fmt, ...);
/* Fails the step; the retry policy applies. printf-style. */
acidic_outcome acidic_retryable(const char *fmt, ...);

/* Attributes, as JSON text: NULL if `name` is not set. */
char *acidic_get(const char *name);
/* Sets attribute `name`; false (with a log line) if `json` is not JSON. */
bool acidic_set(const char *name, const char *json);
bool acidic_set_i64(const char *name, int64_t value);
bool acidic_set_string(const char *name, const char *value);
void acidic_delete(const char *name);

/* Stages a run of `workflow` (it exists only if this step commits); `key`
 * may be NULL. Returns its idempotency key, or NULL (reason in *error). */
char *acidic_enqueue(const char *workflow, const char *args_json, const char *key, char **error);

/* SQL in the step's transaction. Parameters: */
typedef acidic_step_sql_value_t acidic_value;
acidic_value acidic_null(void);
acidic_value acidic_int(int64_t v);
acidic_value acidic_real(double v);
acidic_value acidic_text(const char *s);
acidic_value acidic_json(const char *json);
/* Runs one INSERT, UPDATE or DELETE; the rows changed, or -1 (reason in *error). */
int64_t acidic_execute(const char *statement, const acidic_value *params, size_t n, char **error);
/* Runs one SELECT into *rows (free with acidic_step_sql_rows_free); false on error. */
bool acidic_query(const char *statement, const acidic_value *params, size_t n,
                  acidic_step_sql_rows_t *rows, char **error);

enum { ACIDIC_TRACE, ACIDIC_DEBUG, ACIDIC_INFO, ACIDIC_WARN, ACIDIC_ERROR };
/* The HTTP status `acidic serve` answers this run's request with, if this
 * step commits (a finished run's default is 201) or fails the run for good
 * (default 500): 402 for a declined card, say. 200 to 599. */
void acidic_set_http_status(uint16_t status);

/* A line in the host's log, tagged with the run and step. printf-style. */
void acidic_log(int level, const char *fmt, ...);
#define acidic_info(...) acidic_log(ACIDIC_INFO, __VA_ARGS__)

/* JSON helpers. */
/* The JSON text of member `name` of the object `json`, or NULL. */
char *acidic_json_member(const char *json, const char *name);
/* Reads an integer; false if `json` is NULL or not an integer. */
bool acidic_json_i64(const char *json, int64_t *out);
/* Decodes a JSON string, or NULL if `json` is NULL or not a string. */
char *acidic_json_string(const char *json);
/* Decodes the JSON string literal of n bytes at json, or NULL. */
char *acidic_json_string_n(const char *json, size_t n);
/* Encodes `s` as a JSON string literal. */
char *acidic_json_quote(const char *s);
/* printf into a new string. */
char *acidic_format(const char *fmt, ...);

/* Makes `fn` the component's step. */
acidic_outcome acidic__dispatch(acidic_outcome (*fn)(const acidic_ctx *), step_step_input_t *input,
                                step_outcome_t *ret, step_step_error_t *err, bool *ok);
#define ACIDIC_STEP(fn)                                                                    \
    bool exports_step_run(step_step_input_t *input, step_outcome_t *ret, step_step_error_t *err) { \
        bool ok;                                                                           \
        acidic__dispatch(fn, input, ret, err, &ok);                                        \
        return ok;                                                                         \
    }

#endif
