/* The acidic SDK for C steps: see acidic.h. */
#include "acidic.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *vformat(const char *fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0) n = 0;
    char *out = malloc((size_t)n + 1);
    if (!out) abort();
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    return out;
}

char *acidic_format(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    return s;
}

static char *dup_n(const uint8_t *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, p, n);
    s[n] = 0;
    return s;
}

static char *take(step_string_t *s) {
    char *out = dup_n(s->ptr, s->len);
    step_string_free(s);
    return out;
}

static step_string_t borrow(const char *s) {
    step_string_t out = {(uint8_t *)s, s ? strlen(s) : 0};
    return out;
}

acidic_outcome acidic_continue(void) { return (acidic_outcome){ACIDIC_CONTINUE, NULL}; }
acidic_outcome acidic_repeat(void) { return (acidic_outcome){ACIDIC_REPEAT, NULL}; }
acidic_outcome acidic_finish(const char *json) {
    return (acidic_outcome){ACIDIC_FINISH, strdup(json ? json : "null")};
}
static acidic_outcome failure(int kind, const char *fmt, va_list ap) {
    return (acidic_outcome){kind, vformat(fmt, ap)};
}
acidic_outcome acidic_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    acidic_outcome o = failure(ACIDIC_FATAL, fmt, ap);
    va_end(ap);
    return o;
}
acidic_outcome acidic_retryable(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    acidic_outcome o = failure(ACIDIC_RETRYABLE, fmt, ap);
    va_end(ap);
    return o;
}

void acidic_set_http_status(uint16_t status) {
    acidic_step_context_set_http_status(status);
}

void acidic_log(int level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *line = vformat(fmt, ap);
    va_end(ap);
    step_string_t s = borrow(line);
    if (level < ACIDIC_TRACE || level > ACIDIC_ERROR) level = ACIDIC_INFO;
    acidic_step_context_log((acidic_step_context_level_t)level, &s);
    free(line);
}

char *acidic_get(const char *name) {
    step_string_t n = borrow(name), value;
    if (!acidic_step_attributes_get(&n, &value)) return NULL;
    return take(&value);
}

bool acidic_set(const char *name, const char *json) {
    step_string_t n = borrow(name), v = borrow(json ? json : "null"), err;
    if (acidic_step_attributes_set(&n, &v, &err)) return true;
    char *msg = take(&err);
    acidic_log(ACIDIC_ERROR, "attribute `%s`: %s", name, msg);
    free(msg);
    return false;
}

bool acidic_set_i64(const char *name, int64_t value) {
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)value);
    return acidic_set(name, buf);
}

bool acidic_set_string(const char *name, const char *value) {
    char *json = acidic_json_quote(value);
    bool ok = acidic_set(name, json);
    free(json);
    return ok;
}

void acidic_delete(const char *name) {
    step_string_t n = borrow(name);
    acidic_step_attributes_delete(&n);
}

char *acidic_enqueue(const char *workflow, const char *args_json, const char *key, char **error) {
    acidic_step_staging_job_t job = {0};
    job.workflow = borrow(workflow);
    job.args = borrow(args_json ? args_json : "null");
    if (key) {
        job.key.is_some = true;
        job.key.val = borrow(key);
    }
    step_string_t ok, err;
    if (acidic_step_staging_enqueue(&job, &ok, &err)) return take(&ok);
    char *msg = take(&err);
    if (error) *error = msg; else free(msg);
    return NULL;
}

acidic_value acidic_null(void) { return (acidic_value){.tag = ACIDIC_STEP_SQL_VALUE_NULL}; }
acidic_value acidic_int(int64_t v) {
    return (acidic_value){.tag = ACIDIC_STEP_SQL_VALUE_INTEGER, .val.integer = v};
}
acidic_value acidic_real(double v) {
    return (acidic_value){.tag = ACIDIC_STEP_SQL_VALUE_REAL, .val.real = v};
}
acidic_value acidic_text(const char *s) {
    if (!s) return acidic_null();
    return (acidic_value){.tag = ACIDIC_STEP_SQL_VALUE_TEXT, .val.text = borrow(s)};
}
acidic_value acidic_json(const char *json) {
    if (!json) return acidic_null();
    return (acidic_value){.tag = ACIDIC_STEP_SQL_VALUE_JSON, .val.json = borrow(json)};
}

static char *sql_error(acidic_step_sql_sql_error_t *e) {
    bool refused = e->tag == ACIDIC_STEP_SQL_SQL_ERROR_REFUSED;
    char *msg = dup_n(e->val.refused.ptr, e->val.refused.len);
    char *out = acidic_format("sql %s: %s", refused ? "refused" : "failed", msg);
    free(msg);
    acidic_step_sql_sql_error_free(e);
    return out;
}

int64_t acidic_execute(const char *statement, const acidic_value *params, size_t n, char **error) {
    step_string_t s = borrow(statement);
    acidic_step_sql_list_value_t list = {(acidic_value *)params, n};
    uint64_t changed;
    acidic_step_sql_sql_error_t err;
    if (acidic_step_sql_execute(&s, &list, &changed, &err)) return (int64_t)changed;
    char *msg = sql_error(&err);
    if (error) *error = msg; else free(msg);
    return -1;
}

bool acidic_query(const char *statement, const acidic_value *params, size_t n,
                  acidic_step_sql_rows_t *rows, char **error) {
    step_string_t s = borrow(statement);
    acidic_step_sql_list_value_t list = {(acidic_value *)params, n};
    acidic_step_sql_sql_error_t err;
    if (acidic_step_sql_query(&s, &list, rows, &err)) return true;
    char *msg = sql_error(&err);
    if (error) *error = msg; else free(msg);
    return false;
}

/* ---- JSON ---- */

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

/* The end of the JSON value starting at p (whitespace skipped), or NULL. */
static const char *skip_value(const char *p) {
    p = skip_ws(p);
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\' && !*++p) return NULL;
        return *p ? p + 1 : NULL;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (*p) {
            if (*p == '"') {
                p = skip_value(p);
                if (!p) return NULL;
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            if (*p == '}' || *p == ']') {
                if (--depth == 0) return p + 1;
            }
            p++;
        }
        return NULL;
    }
    const char *start = p;
    while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\t' && *p != '\r') p++;
    return p == start ? NULL : p;
}

char *acidic_json_member(const char *json, const char *name) {
    if (!json) return NULL;
    const char *p = skip_ws(json);
    if (*p != '{') return NULL;
    p = skip_ws(p + 1);
    while (*p == '"') {
        const char *key_end = skip_value(p);
        if (!key_end) return NULL;
        char *key = acidic_json_string_n(p, (size_t)(key_end - p));
        p = skip_ws(key_end);
        if (*p != ':') { free(key); return NULL; }
        const char *value = skip_ws(p + 1), *end = skip_value(value);
        if (!end) { free(key); return NULL; }
        bool match = key && strcmp(key, name) == 0;
        free(key);
        if (match) return dup_n((const uint8_t *)value, (size_t)(end - value));
        p = skip_ws(end);
        if (*p != ',') return NULL;
        p = skip_ws(p + 1);
    }
    return NULL;
}

bool acidic_json_i64(const char *json, int64_t *out) {
    if (!json) return false;
    char *end;
    errno = 0;
    long long v = strtoll(skip_ws(json), &end, 10);
    if (errno == ERANGE || end == skip_ws(json) || *skip_ws(end)) return false;
    *out = (int64_t)v;
    return true;
}

static void put_utf8(char **o, unsigned cp) {
    char *q = *o;
    if (cp < 0x80) *q++ = (char)cp;
    else if (cp < 0x800) { *q++ = (char)(0xC0 | cp >> 6); *q++ = (char)(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
        *q++ = (char)(0xE0 | cp >> 12); *q++ = (char)(0x80 | ((cp >> 6) & 0x3F)); *q++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *q++ = (char)(0xF0 | cp >> 18); *q++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *q++ = (char)(0x80 | ((cp >> 6) & 0x3F)); *q++ = (char)(0x80 | (cp & 0x3F));
    }
    *o = q;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

char *acidic_json_string_n(const char *json, size_t n) {
    if (!json || n < 2 || json[0] != '"' || json[n - 1] != '"') return NULL;
    char *out = malloc(n), *o = out;
    if (!out) abort();
    for (const char *p = json + 1, *end = json + n - 1; p < end; p++) {
        if (*p != '\\') { *o++ = *p; continue; }
        if (++p >= end) { free(out); return NULL; }
        switch (*p) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'u': {
            unsigned cp, lo;
            if (end - p < 5 || !hex4(p + 1, &cp)) { free(out); return NULL; }
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 7 && p[1] == '\\' && p[2] == 'u' &&
                hex4(p + 3, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD; /* an unpaired surrogate: not valid UTF-8 */
            }
            put_utf8(&o, cp);
            break;
        }
        default: *o++ = *p;
        }
    }
    *o = 0;
    return out;
}

char *acidic_json_string(const char *json) {
    if (!json) return NULL;
    json = skip_ws(json);
    const char *end = skip_value(json);
    if (!end || *skip_ws(end)) return NULL;
    return acidic_json_string_n(json, (size_t)(end - json));
}

char *acidic_json_quote(const char *s) {
    if (!s) return strdup("null");
    size_t n = strlen(s);
    char *out = malloc(n * 6 + 3), *o = out;
    if (!out) abort();
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': *o++ = '\\'; *o++ = '"'; break;
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        default:
            if (*p < 0x20) o += sprintf(o, "\\u%04x", *p);
            else *o++ = (char)*p;
        }
    }
    *o++ = '"';
    *o = 0;
    return out;
}

/* ---- the export ---- */

acidic_outcome acidic__dispatch(acidic_outcome (*fn)(const acidic_ctx *), step_step_input_t *input,
                                step_outcome_t *ret, step_step_error_t *err, bool *ok) {
    acidic_ctx cx = {
        .run_id = input->run_id,
        .key = take(&input->idempotency_key),
        .workflow = take(&input->workflow),
        .workflow_version = input->workflow_version,
        .step = take(&input->step),
        .attempt = input->attempt,
        .args = take(&input->args),
        .step_key = take(&input->step_key),
    };
    acidic_outcome out = fn(&cx);
    *ok = out.kind <= ACIDIC_REPEAT;
    if (*ok) {
        ret->tag = (uint8_t)out.kind;
        if (out.kind == ACIDIC_FINISH) step_string_set(&ret->val.finish, out.text);
    } else {
        step_string_set(&err->message, out.text ? out.text : strdup("(no message)"));
        err->retryable = out.kind == ACIDIC_RETRYABLE;
    }
    return out;
}
