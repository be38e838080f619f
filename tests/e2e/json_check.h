/* A strict JSON parser (RFC 8259) for the end-to-end tests, which also run where there is no
 * python: the TCG test host has only busybox. It parses into a tree and rejects what a
 * conforming parser rejects: trailing commas, bare words, leading zeros, control characters and
 * bad escapes in strings, duplicate object keys, anything after the value. */
#ifndef EMBER_TESTS_JSON_CHECK_H
#define EMBER_TESTS_JSON_CHECK_H

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
        enum jtype type;
        bool b;
        double num;
        bool is_uint; /* the number is a plain non-negative integer; its value is in u */
        unsigned long long u;
        char *str;          /* J_STR */
        struct jval **kids; /* J_ARR, J_OBJ */
        char **keys;        /* J_OBJ */
        size_t n;
};

struct jparser {
        const char *start, *p, *end;
        char err[160];
        int depth;
};

static void jfree(struct jval *v)
{
        if (!v)
                return;
        for (size_t i = 0; i < v->n; i++) {
                jfree(v->kids[i]);
                if (v->keys)
                        free(v->keys[i]);
        }
        free(v->kids);
        free(v->keys);
        free(v->str);
        free(v);
}

static bool jfail(struct jparser *j, const char *what)
{
        if (!j->err[0])
                snprintf(j->err, sizeof(j->err), "%s at offset %ld", what, (long)(j->p - j->start));
        return false;
}

static void jws(struct jparser *j)
{
        while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
                j->p++;
}

static void jput_utf8(char *out, size_t *n, unsigned cp)
{
        if (cp < 0x80) {
                out[(*n)++] = (char)cp;
        } else if (cp < 0x800) {
                out[(*n)++] = (char)(0xc0 | (cp >> 6));
                out[(*n)++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
                out[(*n)++] = (char)(0xe0 | (cp >> 12));
                out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[(*n)++] = (char)(0x80 | (cp & 0x3f));
        } else {
                out[(*n)++] = (char)(0xf0 | (cp >> 18));
                out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[(*n)++] = (char)(0x80 | (cp & 0x3f));
        }
}

static bool jhex4(struct jparser *j, unsigned *out)
{
        *out = 0;
        for (int i = 0; i < 4; i++, j->p++) {
                if (j->p >= j->end || !isxdigit((unsigned char)*j->p))
                        return jfail(j, "bad \\u escape");
                char c = (char)tolower((unsigned char)*j->p);
                *out = *out * 16 + (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        return true;
}

static bool jstring(struct jparser *j, char **out)
{
        j->p++; /* the opening quote */
        char *s = malloc((size_t)(j->end - j->p) * 2 + 1);
        size_t n = 0;
        if (!s)
                return jfail(j, "out of memory");
        while (j->p < j->end && *j->p != '"') {
                unsigned char c = (unsigned char)*j->p;
                if (c < 0x20) {
                        free(s);
                        return jfail(j, "control character in a string");
                }
                if (c != '\\') {
                        s[n++] = (char)c;
                        j->p++;
                        continue;
                }
                j->p++;
                if (j->p >= j->end)
                        break;
                char e = *j->p++;
                const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
                const char *k = strchr(from, e);
                if (e && k) {
                        s[n++] = to[k - from];
                } else if (e == 'u') {
                        unsigned cp, lo;
                        if (!jhex4(j, &cp)) {
                                free(s);
                                return false;
                        }
                        if (cp >= 0xd800 && cp < 0xdc00) {
                                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u') {
                                        free(s);
                                        return jfail(j, "lone high surrogate");
                                }
                                j->p += 2;
                                if (!jhex4(j, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                                        free(s);
                                        return jfail(j, "bad low surrogate");
                                }
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        }
                        jput_utf8(s, &n, cp);
                } else {
                        free(s);
                        return jfail(j, "bad escape");
                }
        }
        if (j->p >= j->end) {
                free(s);
                return jfail(j, "unterminated string");
        }
        j->p++;
        s[n] = 0;
        *out = s;
        return true;
}

static bool jnumber(struct jparser *j, struct jval *v)
{
        const char *s = j->p;
        if (*j->p == '-')
                j->p++;
        if (j->p < j->end && *j->p == '0')
                j->p++;
        else if (j->p < j->end && *j->p >= '1' && *j->p <= '9')
                while (j->p < j->end && isdigit((unsigned char)*j->p))
                        j->p++;
        else
                return jfail(j, "bad number");
        bool plain = *s != '-';
        if (j->p < j->end && *j->p == '.') {
                plain = false;
                j->p++;
                if (j->p >= j->end || !isdigit((unsigned char)*j->p))
                        return jfail(j, "bad fraction");
                while (j->p < j->end && isdigit((unsigned char)*j->p))
                        j->p++;
        }
        if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
                plain = false;
                j->p++;
                if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
                        j->p++;
                if (j->p >= j->end || !isdigit((unsigned char)*j->p))
                        return jfail(j, "bad exponent");
                while (j->p < j->end && isdigit((unsigned char)*j->p))
                        j->p++;
        }
        v->type = J_NUM;
        v->num = strtod(s, NULL);
        v->is_uint = plain;
        if (plain)
                v->u = strtoull(s, NULL, 10);
        return true;
}

static struct jval *jvalue(struct jparser *j);

static bool jadd(struct jval *v, struct jval *kid, char *key)
{
        struct jval **k = realloc(v->kids, (v->n + 1) * sizeof(*k));
        if (!k)
                return false;
        v->kids = k;
        if (v->type == J_OBJ) {
                char **ks = realloc(v->keys, (v->n + 1) * sizeof(*ks));
                if (!ks)
                        return false;
                v->keys = ks;
                v->keys[v->n] = key;
        }
        v->kids[v->n++] = kid;
        return true;
}

static bool jcontainer(struct jparser *j, struct jval *v)
{
        char close = v->type == J_OBJ ? '}' : ']';
        j->p++;
        jws(j);
        if (j->p < j->end && *j->p == close) {
                j->p++;
                return true;
        }
        for (;;) {
                char *key = NULL;
                jws(j);
                if (v->type == J_OBJ) {
                        if (j->p >= j->end || *j->p != '"')
                                return jfail(j, "object key expected");
                        if (!jstring(j, &key))
                                return false;
                        for (size_t i = 0; i < v->n; i++)
                                if (!strcmp(v->keys[i], key)) {
                                        free(key);
                                        return jfail(j, "duplicate key");
                                }
                        jws(j);
                        if (j->p >= j->end || *j->p != ':') {
                                free(key);
                                return jfail(j, "':' expected");
                        }
                        j->p++;
                }
                struct jval *kid = jvalue(j);
                if (!kid || !jadd(v, kid, key)) {
                        free(key);
                        jfree(kid);
                        return jfail(j, "bad value");
                }
                jws(j);
                if (j->p < j->end && *j->p == ',') {
                        j->p++;
                        continue;
                }
                if (j->p < j->end && *j->p == close) {
                        j->p++;
                        return true;
                }
                return jfail(j, "',' or end of container expected");
        }
}

static struct jval *jvalue(struct jparser *j)
{
        struct jval *v = calloc(1, sizeof(*v));
        bool ok = false;
        if (!v)
                return NULL;
        if (++j->depth > 64) {
                jfail(j, "nested too deeply");
                free(v);
                return NULL;
        }
        jws(j);
        size_t left = (size_t)(j->end - j->p);
        if (!left) {
                jfail(j, "value expected");
        } else if (*j->p == '{' || *j->p == '[') {
                v->type = *j->p == '{' ? J_OBJ : J_ARR;
                ok = jcontainer(j, v);
        } else if (*j->p == '"') {
                v->type = J_STR;
                ok = jstring(j, &v->str);
        } else if (left >= 4 && !strncmp(j->p, "null", 4)) {
                v->type = J_NULL;
                j->p += 4;
                ok = true;
        } else if (left >= 4 && !strncmp(j->p, "true", 4)) {
                v->type = J_BOOL;
                v->b = true;
                j->p += 4;
                ok = true;
        } else if (left >= 5 && !strncmp(j->p, "false", 5)) {
                v->type = J_BOOL;
                j->p += 5;
                ok = true;
        } else {
                ok = jnumber(j, v);
        }
        j->depth--;
        if (!ok) {
                jfree(v);
                return NULL;
        }
        return v;
}

/* Parses a whole document (a NUL-terminated buffer). NULL with err filled on any error. */
static struct jval *json_parse(const char *text, char *err, size_t errlen)
{
        struct jparser j = {.start = text, .p = text, .end = text + strlen(text)};
        struct jval *v = jvalue(&j);
        if (v) {
                jws(&j);
                if (j.p != j.end) {
                        jfail(&j, "trailing data after the value");
                        jfree(v);
                        v = NULL;
                }
        }
        if (!v)
                snprintf(err, errlen, "%s", j.err[0] ? j.err : "parse error");
        return v;
}

static const struct jval *json_get(const struct jval *obj, const char *key)
{
        if (!obj || obj->type != J_OBJ)
                return NULL;
        for (size_t i = 0; i < obj->n; i++)
                if (!strcmp(obj->keys[i], key))
                        return obj->kids[i];
        return NULL;
}

#endif
