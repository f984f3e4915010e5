/* cli/opt.c — the table-driven option parser and the `--help` it generates (cli/opt.h). */
#include "opt.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ld_cli_list_free(ld_cli_list *l) {
    if (!l) return;
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

bool ld_cli_list_push(ld_cli_list *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        const char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = s;
    return true;
}

static FILE *err_of(const ld_cli_spec *s) {
    return s->err ? s->err : stderr;
}

/* ---- numbers ---- */

/* A double bound as an integer, clamped to the type (2^63 has no long long). */
static long long to_ll(double d) {
    return d >= 9.2233720368547758e18 ? LLONG_MAX : d <= -9.2233720368547758e18 ? LLONG_MIN : (long long)d;
}

/* The range an integer option accepts (the type's whole range when the table gives none). */
static void int_range(const ld_cli_opt *o, long long *lo, long long *hi) {
    if (o->min != 0 || o->max != 0) *lo = to_ll(o->min), *hi = to_ll(o->max);
    else if (o->type == LD_CLI_T_INT) *lo = INT_MIN, *hi = INT_MAX;
    else *lo = o->type == LD_CLI_T_INT64 ? LLONG_MIN : 0, *hi = LLONG_MAX;
}

/* A whole decimal integer: optional '-', digits, nothing else (no spaces, no '+', no 0x). */
static bool whole_integer(const char *s) {
    if (*s == '-') s++;
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

static bool set_float(const ld_cli_spec *sp, const ld_cli_opt *o, const char *optname, const char *v) {
    double lo = o->min, hi = o->max;
    bool any = lo == 0 && hi == 0;
    char *end = NULL;
    double x = *v && !strchr(" \t\n", *v) ? strtod(v, &end) : NAN;
    bool ok = end && !*end && isfinite(x) && !(o->type == LD_CLI_T_FLOAT && fabs(x) > 3.4028234663852886e38) &&
              (any || ((o->open & LD_CLI_OPEN_MIN ? x > lo : x >= lo) && (o->open & LD_CLI_OPEN_MAX ? x < hi : x <= hi)));
    if (!ok) {
        if (any) fprintf(err_of(sp), "liandan %s: %s: '%s' is not a finite number\n", sp->cmd, optname, v);
        else
            fprintf(err_of(sp), "liandan %s: %s: '%s' is not a number in %s%g, %g%s\n", sp->cmd, optname, v,
                    o->open & LD_CLI_OPEN_MIN ? "(" : "[", lo, hi, o->open & LD_CLI_OPEN_MAX ? ")" : "]");
        return false;
    }
    if (o->type == LD_CLI_T_FLOAT) *o->dest.f = (float)x;
    else *o->dest.d = x;
    return true;
}

static bool set_number(const ld_cli_spec *sp, const ld_cli_opt *o, const char *optname, const char *v) {
    if (o->type == LD_CLI_T_FLOAT || o->type == LD_CLI_T_DOUBLE) return set_float(sp, o, optname, v);
    errno = 0;
    bool ok = whole_integer(v);
    if (o->type == LD_CLI_T_UINT64) {
        /* seeds: the whole unsigned range, no bounds */
        unsigned long long u = ok && *v != '-' ? strtoull(v, NULL, 10) : 0;
        ok = ok && *v != '-' && errno == 0;
        if (ok) *o->dest.u64 = (uint64_t)u;
        else
            fprintf(err_of(sp), "liandan %s: %s: '%s' is not an integer in 0..%llu\n", sp->cmd, optname, v,
                    (unsigned long long)UINT64_MAX);
        return ok;
    }
    long long lo, hi, x = ok ? strtoll(v, NULL, 10) : 0;
    int_range(o, &lo, &hi);
    ok = ok && errno == 0 && x >= lo && x <= hi;
    if (!ok) {
        fprintf(err_of(sp), "liandan %s: %s: '%s' is not an integer in %lld..%lld\n", sp->cmd, optname, v, lo, hi);
        return false;
    }
    if (o->type == LD_CLI_T_INT) *o->dest.i = (int)x;
    else *o->dest.i64 = (int64_t)x;
    return true;
}

bool ld_cli_parse_int64(const char *cmd, const char *what, const char *s, int64_t min, int64_t max, int64_t *out) {
    errno = 0;
    long long x = whole_integer(s) ? strtoll(s, NULL, 10) : 0;
    if (!whole_integer(s) || errno || x < min || x > max) {
        fprintf(stderr, "liandan %s: %s: '%s' is not an integer in %lld..%lld\n", cmd, what, s, (long long)min,
                (long long)max);
        return false;
    }
    *out = x;
    return true;
}

/* ---- the table ---- */

/* Finds the option named by the argument: "--name", "--name=v" (*inline_v = "v"), "-x", "-xv". */
static const ld_cli_opt *find(const ld_cli_opt *t, const char *a, const char **inline_v) {
    for (; t->type != LD_CLI_T_END; t++) {
        if (t->type == LD_CLI_T_GROUP) {
            const ld_cli_opt *g = find(t->dest.group, a, inline_v);
            if (g) return g;
            continue;
        }
        if (a[1] == '-') {
            size_t n = strlen(t->name);
            if (!strncmp(a + 2, t->name, n) && (a[2 + n] == 0 || a[2 + n] == '=')) {
                *inline_v = a[2 + n] == '=' ? a + 3 + n : NULL;
                return t;
            }
        } else if (t->short_name && a[1] == t->short_name) {
            *inline_v = a[2] ? a + 2 : NULL;
            return t;
        }
    }
    return NULL;
}

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (lb >= 63 || la >= 63) return 99;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up, row[j] = best;
        }
    }
    return row[lb];
}

/* The shown option closest to `name` (for "did you mean"), or NULL. */
static const ld_cli_opt *closest(const ld_cli_opt *t, const char *name, size_t *best) {
    const ld_cli_opt *r = NULL;
    for (; t->type != LD_CLI_T_END; t++) {
        if (t->type == LD_CLI_T_GROUP) {
            const ld_cli_opt *g = closest(t->dest.group, name, best);
            if (g) r = g;
        } else if (t->help) {
            size_t d = edit_distance(name, t->name);
            if (d < *best) *best = d, r = t;
        }
    }
    return r;
}

static bool takes_value(const ld_cli_opt *o) {
    return o->type != LD_CLI_T_FLAG;
}

/* Stores one value; false after printing why it is bad. */
static bool store(const ld_cli_spec *sp, const ld_cli_opt *o, const char *optname, const char *v) {
    switch (o->type) {
    case LD_CLI_T_FLAG: *o->dest.flag = true; return true;
    case LD_CLI_T_STRING: *o->dest.s = v; return true;
    case LD_CLI_T_LIST:
        if (ld_cli_list_push(o->dest.list, v)) return true;
        fprintf(err_of(sp), "liandan %s: out of memory\n", sp->cmd);
        return false;
    case LD_CLI_T_FUNC: return o->fn(o->dest.user, optname, v);
    case LD_CLI_T_ENUM:
        for (int k = 0; o->choices[k]; k++)
            if (!strcmp(o->choices[k], v)) return *o->dest.i = k, true;
        fprintf(err_of(sp), "liandan %s: %s: '%s' is not one of", sp->cmd, optname, v);
        for (int k = 0; o->choices[k]; k++) fprintf(err_of(sp), "%s %s", k ? "," : "", o->choices[k]);
        fputc('\n', err_of(sp));
        return false;
    default: return set_number(sp, o, optname, v);
    }
}

static void usage_line(const ld_cli_spec *sp, FILE *f) {
    fprintf(f, "usage: liandan %s%s%s [options]\n", sp->cmd, sp->args && *sp->args ? " " : "", sp->args ? sp->args : "");
}

static bool bad_usage(const ld_cli_spec *sp, int *rc) {
    usage_line(sp, err_of(sp));
    fprintf(err_of(sp), "(liandan %s --help lists the options)\n", sp->cmd);
    *rc = 2;
    return false;
}

/* One pass over argv. dry: only looks for -h/--help (skipping option values); true when found. */
static bool scan(const ld_cli_spec *sp, int argc, char **argv, bool dry, int *rc) {
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool is_opt = !only_pos && a[0] == '-' && a[1];
        if (is_opt && !strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (is_opt && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            if (dry) return true;
            continue;
        }
        if (!is_opt) {
            if (dry) continue;
            if (!sp->pos || (sp->max_pos >= 0 && sp->pos->n >= sp->max_pos)) {
                fprintf(err_of(sp), "liandan %s: unexpected argument '%s'\n", sp->cmd, a);
                return bad_usage(sp, rc);
            }
            if (!ld_cli_list_push(sp->pos, a)) return fprintf(err_of(sp), "liandan %s: out of memory\n", sp->cmd), *rc = 1, false;
            continue;
        }
        const char *inl = NULL;
        const ld_cli_opt *o = find(sp->opts, a, &inl);
        if (!o) {
            if (dry) continue;
            char name[64];
            size_t n = strcspn(a + (a[1] == '-' ? 2 : 1), "=");
            snprintf(name, sizeof name, "%.*s", (int)(n < 63 ? n : 63), a + (a[1] == '-' ? 2 : 1));
            size_t best = n > 4 ? 3 : 2;
            const ld_cli_opt *c = closest(sp->opts, name, &best);
            fprintf(err_of(sp), "liandan %s: unknown option '%s'", sp->cmd, a);
            if (c) fprintf(err_of(sp), " (did you mean --%s?)", c->name);
            fputc('\n', err_of(sp));
            return bad_usage(sp, rc);
        }
        char optname[80];
        if (a[1] == '-') snprintf(optname, sizeof optname, "--%s", o->name);
        else snprintf(optname, sizeof optname, "-%c", o->short_name);
        const char *v = NULL;
        if (!takes_value(o)) {
            if (inl && a[1] == '-') {
                if (dry) continue;
                fprintf(err_of(sp), "liandan %s: %s takes no value\n", sp->cmd, optname);
                return bad_usage(sp, rc);
            }
            if (inl) { /* -abc: only single-letter flags are supported, one at a time */
                if (dry) continue;
                fprintf(err_of(sp), "liandan %s: unknown option '%s'\n", sp->cmd, a);
                return bad_usage(sp, rc);
            }
        } else if (inl) {
            v = inl;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            if (dry) continue;
            fprintf(err_of(sp), "liandan %s: %s needs a value (%s)\n", sp->cmd, optname,
                    o->arg ? o->arg : "see --help");
            return bad_usage(sp, rc);
        }
        if (dry) continue;
        if (!store(sp, o, optname, v)) return *rc = 2, false;
    }
    return dry ? false : true;
}

/* Options with `required` that were not given: their variable still holds NULL (strings) or the
 * list is empty. Only STRING and LIST rows may be required. */
static bool check_required(const ld_cli_spec *sp, const ld_cli_opt *t, int *rc) {
    for (; t->type != LD_CLI_T_END; t++) {
        if (t->type == LD_CLI_T_GROUP) {
            if (!check_required(sp, t->dest.group, rc)) return false;
            continue;
        }
        if (!t->required) continue;
        bool missing = (t->type == LD_CLI_T_STRING && !*t->dest.s) || (t->type == LD_CLI_T_LIST && !t->dest.list->n);
        if (missing) {
            fprintf(err_of(sp), "liandan %s: --%s is required\n", sp->cmd, t->name);
            return bad_usage(sp, rc);
        }
    }
    return true;
}

bool ld_cli_parse(const ld_cli_spec *sp, int argc, char **argv, int *rc) {
    *rc = 0;
    if (scan(sp, argc, argv, true, rc)) {
        ld_cli_help(sp, sp->out ? sp->out : stdout);
        *rc = 0;
        return false;
    }
    if (!scan(sp, argc, argv, false, rc)) return false;
    if (getenv("LD_CLI_PARSE_ONLY")) { /* the help test: the options parsed, nothing is run */
        fprintf(sp->out ? sp->out : stdout, "liandan %s: options parsed\n", sp->cmd);
        return *rc = 0, false;
    }
    if (!check_required(sp, sp->opts, rc)) return false;
    int n = sp->pos ? sp->pos->n : 0;
    if (n < sp->min_pos) {
        fprintf(err_of(sp), "liandan %s: missing %s\n", sp->cmd, sp->args && *sp->args ? sp->args : "arguments");
        return bad_usage(sp, rc);
    }
    return true;
}

static void free_table(const ld_cli_opt *t) {
    for (; t->type != LD_CLI_T_END; t++) {
        if (t->type == LD_CLI_T_GROUP) free_table(t->dest.group);
        else if (t->type == LD_CLI_T_LIST) ld_cli_list_free(t->dest.list);
    }
}

void ld_cli_parse_free(const ld_cli_spec *sp) {
    free_table(sp->opts);
    ld_cli_list_free(sp->pos);
}

/* ---- help ---- */

/* The default as text into buf; "" when none is shown. */
static void default_text(const ld_cli_opt *o, char *buf, size_t cap) {
    buf[0] = 0;
    if (o->def) {
        snprintf(buf, cap, "%s", o->def);
        return;
    }
    switch (o->type) {
    case LD_CLI_T_INT: snprintf(buf, cap, "%d", *o->dest.i); break;
    case LD_CLI_T_INT64: snprintf(buf, cap, "%lld", (long long)*o->dest.i64); break;
    case LD_CLI_T_UINT64: snprintf(buf, cap, "%llu", (unsigned long long)*o->dest.u64); break;
    case LD_CLI_T_FLOAT: snprintf(buf, cap, "%g", (double)*o->dest.f); break;
    case LD_CLI_T_DOUBLE: snprintf(buf, cap, "%g", *o->dest.d); break;
    case LD_CLI_T_STRING:
        if (*o->dest.s) snprintf(buf, cap, "%s", *o->dest.s);
        break;
    case LD_CLI_T_ENUM:
        if (*o->dest.i >= 0) snprintf(buf, cap, "%s", o->choices[*o->dest.i]);
        break;
    default: break;
    }
}

static void help_row(const ld_cli_opt *o, FILE *f) {
    char left[160], arg[128] = "", def[96];
    if (takes_value(o)) {
        if (o->arg) snprintf(arg, sizeof arg, " %s", o->arg);
        else if (o->choices) {
            size_t n = 0;
            for (int k = 0; o->choices[k] && n + 1 < sizeof arg; k++)
                n += (size_t)snprintf(arg + n, sizeof arg - n, "%s%s", k ? "|" : " ", o->choices[k]);
        } else snprintf(arg, sizeof arg, " VALUE");
    }
    if (o->short_name) snprintf(left, sizeof left, "-%c, --%s%s", o->short_name, o->name, arg);
    else snprintf(left, sizeof left, "    --%s%s", o->name, arg);
    default_text(o, def, sizeof def);
    const char *h = o->help;
    fprintf(f, "  %-28s", left);
    if (strlen(left) > 28) fprintf(f, "\n  %-28s", "");
    /* the help's lines, indented under the first */
    for (const char *p = h;;) {
        size_t n = strcspn(p, "\n");
        fwrite(p, 1, n, f);
        if (!p[n]) break;
        fprintf(f, "\n  %-28s", "");
        p += n + 1;
    }
    if (def[0]) fprintf(f, " (default: %s)", def);
    if (o->required) fputs(" (required)", f);
    fputc('\n', f);
}

static void help_table(const ld_cli_opt *t, FILE *f, bool top) {
    for (const ld_cli_opt *o = t; o->type != LD_CLI_T_END; o++)
        if (o->type != LD_CLI_T_GROUP && o->help) help_row(o, f);
    static const ld_cli_opt help = {.name = "help", .short_name = 'h', .type = LD_CLI_T_FLAG, .help = "show this help"};
    if (top) help_row(&help, f);
    for (const ld_cli_opt *o = t; o->type != LD_CLI_T_END; o++)
        if (o->type == LD_CLI_T_GROUP) {
            fprintf(f, "\n%s:\n", o->help);
            help_table(o->dest.group, f, false);
        }
}

void ld_cli_help(const ld_cli_spec *sp, FILE *f) {
    usage_line(sp, f);
    if (sp->about && *sp->about) fprintf(f, "\n%s%s", sp->about, sp->about[strlen(sp->about) - 1] == '\n' ? "" : "\n");
    fputs("\noptions:\n", f);
    help_table(sp->opts, f, true);
    if (sp->more && *sp->more) fprintf(f, "\n%s%s", sp->more, sp->more[strlen(sp->more) - 1] == '\n' ? "" : "\n");
}
