/* `ember run --metrics-json` and `--timeout` end to end (EMBER, KERNEL, ROOTFS, SCRATCH from the
 * e2e harness): the JSON is parsed by a strict parser (json_check.h: the TCG test host has no
 * python), every documented field must be there, nothing else, and the values must be
 * plausible: the boot markers in order, the exits adding up, the memory figures within the
 * guest's size, the end and exit code matching what happened. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e/json_check.h"
#include "test.h"

static const char *ember, *kernel, *rootfs, *scratch;

/* The documented fields (README, "Metrics as JSON"), in order. */
static const char *const fields[] = {
    "ember_version",   "exit_code", "end",          "error", "vcpus",        "uptime_ns",
    "init_reached_ns", "exec_ns",   "vcpu_time_ns", "exits", "memory_bytes", "host_resident_bytes",
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

/* Runs `ember run --kernel K --rootfs R ARGS...` with stdin /dev/null, stdout and stderr to
 * files in SCRATCH; returns its exit status (-1 if it did not exit). */
static int run_ember(const char *const *args)
{
        const char *argv[32] = {ember, "run", "--kernel", kernel, "--rootfs", rootfs};
        size_t n = 6;
        while (*args && n < 31)
                argv[n++] = *args++;
        argv[n] = NULL;
        char out[512], err[512];
        snprintf(out, sizeof(out), "%s/out", scratch);
        snprintf(err, sizeof(err), "%s/err", scratch);
        pid_t pid = fork();
        if (pid == 0) {
                if (!freopen("/dev/null", "r", stdin) || !freopen(out, "w", stdout) ||
                    !freopen(err, "w", stderr))
                        _exit(99);
                execv(ember, (char *const *)argv);
                _exit(98);
        }
        int ws;
        if (pid < 0 || waitpid(pid, &ws, 0) != pid || !WIFEXITED(ws))
                return -1;
        return WEXITSTATUS(ws);
}

static char *slurp(const char *name)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", scratch, name);
        FILE *f = fopen(path, "r");
        if (!f)
                return NULL;
        static char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = 0;
        fclose(f);
        return strdup(buf);
}

static void show(const char *what, const char *text)
{
        printf("    %s:\n", what);
        for (const char *p = text; p && *p;) {
                const char *nl = strchr(p, '\n');
                int len = nl ? (int)(nl - p) : (int)strlen(p);
                printf("      %.*s\n", len, p);
                p += len + (nl ? 1 : 0);
        }
}

static unsigned long long uint_field(const struct jval *o, const char *key)
{
        const struct jval *v = json_get(o, key);
        if (!v || v->type != J_NUM || !v->is_uint)
                FAILF("field %s is not a non-negative integer", key);
        return v->u;
}

static const char *str_field(const struct jval *o, const char *key)
{
        const struct jval *v = json_get(o, key);
        if (!v || v->type != J_STR)
                FAILF("field %s is not a string", key);
        return v->str;
}

/* Parses the document and checks its shape: exactly the documented fields, with their types. */
static struct jval *parse_metrics(const char *text)
{
        char err[200];
        struct jval *o = json_parse(text, err, sizeof(err));
        if (!o) {
                show("metrics", text);
                FAILF("not JSON: %s", err);
        }
        if (o->type != J_OBJ)
                FAILF("the document is not an object");
        if (o->n != NFIELDS) {
                show("metrics", text);
                FAILF("%zu fields, want the %zu documented ones", o->n, NFIELDS);
        }
        for (size_t i = 0; i < NFIELDS; i++)
                if (!json_get(o, fields[i]))
                        FAILF("documented field %s is missing", fields[i]);
        CHECK(str_field(o, "ember_version")[0] != 0);
        const struct jval *code = json_get(o, "exit_code");
        CHECK(code->type == J_NUM && code->is_uint && code->u <= 255);
        str_field(o, "end");
        str_field(o, "error");
        CHECK(uint_field(o, "vcpus") >= 1);
        uint_field(o, "uptime_ns");
        uint_field(o, "vcpu_time_ns");
        for (size_t i = 0; i < 2; i++) {
                const char *m = i ? "exec_ns" : "init_reached_ns";
                const struct jval *v = json_get(o, m);
                if (v->type != J_NULL && !(v->type == J_NUM && v->is_uint))
                        FAILF("%s is neither null nor a non-negative integer", m);
        }
        const struct jval *exits = json_get(o, "exits");
        if (exits->type != J_OBJ || exits->n != 5)
                FAILF("exits is not an object of 5 counters");
        unsigned long long sum = uint_field(exits, "io") + uint_field(exits, "mmio") +
                                 uint_field(exits, "hlt") + uint_field(exits, "other");
        CHECK_EQ(uint_field(exits, "total"), sum);
        uint_field(o, "memory_bytes");
        CHECK(uint_field(o, "host_resident_bytes") <= uint_field(o, "memory_bytes"));
        return o;
}

static void t_json_parser_is_strict(void)
{
        static const char *const bad[] = {
            "",
            "{",
            "{\"a\":1,}",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "-",
            "{\"a\":1}x",
            "\"tab\there\"",
            "\"\\x\"",
            "nul",
            "{\"a\":1,\"a\":2}",
            "[\"\\ud800\"]",
            "{a:1}",
        };
        char err[200];
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct jval *v = json_parse(bad[i], err, sizeof(err));
                if (v) {
                        jfree(v);
                        FAILF("accepted invalid JSON '%s'", bad[i]);
                }
        }
        struct jval *v =
            json_parse(" {\"a\": [1, -2.5e3, true, false, null], \"b\": \"\\u00e9\\n\\\"\"} ", err,
                       sizeof(err));
        REQUIRE(v);
        CHECK_EQ(json_get(v, "a")->n, 5);
        CHECK(json_get(v, "a")->kids[1]->num == -2500.0);
        CHECK_STR(json_get(v, "b")->str, "\xc3\xa9\n\"");
        jfree(v);
}

static void t_metrics_json_file(void)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/metrics.json", scratch);
        unlink(path);
        const char *args[] = {"--memory", "128", "--cpus", "2",  "--metrics-json",
                              path,       "--",  "sh",     "-c", "echo hi; exit 3",
                              NULL};
        int rc = run_ember(args);
        char *text = slurp("metrics.json"), *out = slurp("out");
        if (rc != 3)
                show("stderr", slurp("err"));
        CHECK_EQ(rc, 3);
        CHECK_STR(out, "hi\n"); /* the metrics do not land on stdout */
        REQUIRE(text);
        struct jval *o = parse_metrics(text);
        CHECK_EQ(uint_field(o, "exit_code"), 3);
        CHECK_STR(str_field(o, "end"), "exited");
        CHECK_STR(str_field(o, "error"), "");
        CHECK_EQ(uint_field(o, "vcpus"), 2);
        CHECK_EQ(uint_field(o, "memory_bytes"), 128ull << 20);
        /* start < init reached < exec < end */
        const struct jval *init = json_get(o, "init_reached_ns"), *exec = json_get(o, "exec_ns");
        REQUIRE(init->type == J_NUM && exec->type == J_NUM);
        CHECK(init->u > 0);
        CHECK(exec->u > init->u);
        CHECK(uint_field(o, "uptime_ns") >= exec->u);
        CHECK(uint_field(o, "vcpu_time_ns") > 0);
        CHECK(uint_field(json_get(o, "exits"), "io") > 0); /* at least init's status reports */
        CHECK(uint_field(o, "host_resident_bytes") > (1u << 20)); /* the kernel at least */
        printf(
            "    init reached %.3f s, exec %.3f s, end %.3f s after start; vCPU %.3f s; "
            "%llu exits; resident %llu MiB of %llu\n",
            (double)init->u / 1e9, (double)exec->u / 1e9, (double)uint_field(o, "uptime_ns") / 1e9,
            (double)uint_field(o, "vcpu_time_ns") / 1e9, uint_field(json_get(o, "exits"), "total"),
            uint_field(o, "host_resident_bytes") >> 20, uint_field(o, "memory_bytes") >> 20);
        jfree(o);
        free(text);
        free(out);
}

/* --timeout stops `sleep 100`: status 124, a message, and "-" puts the JSON on stderr. */
static void t_timeout_metrics_on_stderr(void)
{
        const char *args[] = {"--timeout", "1.5", "--metrics-json", "-", "--", "sleep",
                              "100",       NULL};
        int rc = run_ember(args);
        char *err = slurp("err");
        REQUIRE(err);
        if (rc != 124)
                show("stderr", err);
        CHECK_EQ(rc, 124);
        CHECK(strstr(err, "--timeout") != NULL);
        char *json = strstr(err, "\n{");
        json = json ? json + 1 : (err[0] == '{' ? err : NULL);
        REQUIRE(json);
        struct jval *o = parse_metrics(json);
        CHECK_EQ(uint_field(o, "exit_code"), 124);
        CHECK_STR(str_field(o, "end"), "timeout");
        CHECK(uint_field(o, "uptime_ns") >= 1500000000ull);
        jfree(o);
        free(err);
}

/* A guest that panics: no markers past what it reached, the end and ember's message say so. */
static void t_guest_failed_metrics(void)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/failed.json", scratch);
        const char *args[] = {
            "--cmdline", "rdinit=/nonexistent", "--metrics-json", path, "--", "true", NULL};
        int rc = run_ember(args);
        CHECK_EQ(rc, 125);
        char *text = slurp("failed.json");
        REQUIRE(text);
        struct jval *o = parse_metrics(text);
        CHECK_EQ(uint_field(o, "exit_code"), 125);
        CHECK_STR(str_field(o, "end"), "guest_failed");
        CHECK(str_field(o, "error")[0] != 0);
        CHECK(json_get(o, "init_reached_ns")->type == J_NULL);
        CHECK(json_get(o, "exec_ns")->type == J_NULL);
        jfree(o);
        free(text);
}

int main(void)
{
        ember = getenv("EMBER");
        kernel = getenv("KERNEL");
        rootfs = getenv("ROOTFS");
        scratch = getenv("SCRATCH");
        T_RUN(t_json_parser_is_strict);
        if (!ember || !kernel || !rootfs || !scratch) {
                printf("SKIP cli_metrics: EMBER, KERNEL, ROOTFS and SCRATCH must be set (run "
                       "through tests/e2e/run.sh)\n");
                return T_DONE();
        }
        signal(SIGPIPE, SIG_IGN);
        T_RUN(t_metrics_json_file);
        T_RUN(t_timeout_metrics_on_stderr);
        T_RUN(t_guest_failed_metrics);
        return T_DONE();
}
