/* SPDX-License-Identifier: MIT */
/*
 * Samples, rows, and their output: the table on stdout and --json.
 *
 * A row keeps its samples, and per round: the ratio, the library's median
 * and the library's median minus the baseline's.  The last two are what
 * the own-cost rows (row_own()) report.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

void samples_add(struct samples *s, double x)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		double *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			die("out of memory");
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double samples_quantile(const struct samples *s, size_t from, size_t to,
			double q)
{
	size_t n = to - from, i;
	double *tmp, r;

	if (to > s->n || from >= to)
		return NAN;
	tmp = malloc(n * sizeof(*tmp));
	if (!tmp)
		die("out of memory");
	memcpy(tmp, s->v + from, n * sizeof(*tmp));
	qsort(tmp, n, sizeof(*tmp), cmp_double);
	if (q == 0.5 && n % 2 == 0) {
		r = (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
	} else {
		i = (size_t)ceil(q * (double)n);
		i = i ? i - 1 : 0;
		r = tmp[i < n ? i : n - 1];
	}
	free(tmp);
	return r;
}

static double median(const struct samples *s)
{
	return samples_quantile(s, 0, s->n, 0.5);
}

/* ---- rows ---- */

struct row {
	const char *group;
	char name[80];
	const char *unit;
	char baseline[64];
	enum row_kind kind;
	enum row_target op;
	double target;
	struct samples cfd, base, ratios;
	struct samples cfd_rounds, above_rounds; /* per round, for row_own() */
	size_t cfd_mark, base_mark;
	/* ROW_OWN: */
	const struct row *of;
	enum own_how how;
	double scale; /* of's unit -> this row's */
	double budget;
	char unavailable[48];
	char failed[80];
	char notes[512];
};

static struct row **rows;
static size_t nrows;

struct row *row_new(const char *group, const char *name, const char *unit,
		    const char *baseline, enum row_kind kind,
		    enum row_target op, double target)
{
	struct row *r = calloc(1, sizeof(*r));
	struct row **v = realloc(rows, (nrows + 1) * sizeof(*v));

	if (!r || !v)
		die("out of memory");
	rows = v;
	rows[nrows++] = r;
	r->group = group;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->unit = unit;
	snprintf(r->baseline, sizeof(r->baseline), "%s",
		 baseline ? baseline : "-");
	r->kind = kind;
	r->op = op;
	r->target = target;
	return r;
}

struct row *row_own(const struct row *of, const char *name, const char *unit,
		    enum own_how how, double budget)
{
	struct row *r;
	double scale = 1;

	if (strcmp(unit, "us") == 0 && strcmp(of->unit, "ns") == 0)
		scale = 1e-3;
	else if (strcmp(unit, of->unit) != 0)
		die("own-cost row \"%s\": unit %s from %s", name, unit,
		    of->unit);
	r = row_new(of->group, name, unit,
		    how == OWN_ABOVE_BASE ? of->baseline : NULL, ROW_OWN,
		    TARGET_NONE, 0);
	r->of = of;
	r->how = how;
	r->scale = scale;
	r->budget = budget;
	if (how == OWN_ABOVE_BASE)
		row_note(r,
			 "per round: the cancelfd median of \"%s\" minus "
			 "its baseline's; median over rounds",
			 of->name);
	else
		row_note(r,
			 "per round: the cancelfd median of \"%s\"; median "
			 "over rounds",
			 of->name);
	return r;
}

void row_unavailable(struct row *r, const char *why)
{
	snprintf(r->unavailable, sizeof(r->unavailable), "%s", why);
}

void row_fail(struct row *r, const char *why)
{
	snprintf(r->failed, sizeof(r->failed), "%s", why);
}

void row_note(struct row *r, const char *fmt, ...)
{
	size_t len = strlen(r->notes);
	va_list ap;

	if (len && len < sizeof(r->notes) - 2) {
		strcat(r->notes, "; ");
		len += 2;
	}
	va_start(ap, fmt);
	vsnprintf(r->notes + len, sizeof(r->notes) - len, fmt, ap);
	va_end(ap);
}

bool row_has_baseline(const struct row *r)
{
	return r->unavailable[0] == '\0' && r->kind != ROW_ABSOLUTE &&
	       r->kind != ROW_OWN;
}

void row_round_begin(struct row *r)
{
	r->cfd_mark = r->cfd.n;
	r->base_mark = r->base.n;
}

void row_cfd(struct row *r, double v)
{
	samples_add(&r->cfd, v);
}

void row_base(struct row *r, double v)
{
	samples_add(&r->base, v);
}

void row_round_end(struct row *r)
{
	double c, b;

	if (r->cfd.n == r->cfd_mark)
		return;
	c = samples_quantile(&r->cfd, r->cfd_mark, r->cfd.n, 0.5);
	samples_add(&r->cfd_rounds, c);
	if (r->base.n == r->base_mark)
		return;
	b = samples_quantile(&r->base, r->base_mark, r->base.n, 0.5);
	samples_add(&r->above_rounds, c - b);
	if (c > 0 && b > 0)
		samples_add(&r->ratios,
			    r->kind == ROW_THROUGHPUT ? b / c : c / b);
}

/* ---- the results of a row ---- */

struct result {
	double cfd_med, cfd_p99, base_med, base_p99, ratio;
	size_t cfd_n, base_n, rounds;
	const char *status;
};

/* An own-cost row: the per-round values of the row it is of. */
static void own_result(const struct row *r, struct result *res)
{
	const struct row *of = r->of;
	const struct samples *v =
	    r->how == OWN_ABOVE_BASE ? &of->above_rounds : &of->cfd_rounds;

	res->cfd_med = median(v) * r->scale;
	res->cfd_p99 = samples_quantile(v, 0, v->n, 0.99) * r->scale;
	res->cfd_n = v->n;
	res->base_med = res->base_p99 = NAN;
	res->base_n = 0;
	if (r->how == OWN_ABOVE_BASE) {
		res->base_med = median(&of->base) * r->scale;
		res->base_p99 =
		    samples_quantile(&of->base, 0, of->base.n, 0.99) * r->scale;
		res->base_n = of->base.n;
	}
	res->ratio = NAN;
	res->rounds = v->n;
	res->status = isnan(res->cfd_med) ? "n/a" : "info";
}

static void row_result(const struct row *r, struct result *res)
{
	double x;
	bool ok;

	if (r->kind == ROW_OWN) {
		own_result(r, res);
		return;
	}
	res->cfd_med = median(&r->cfd);
	res->cfd_p99 = samples_quantile(&r->cfd, 0, r->cfd.n, 0.99);
	res->base_med = median(&r->base);
	res->base_p99 = samples_quantile(&r->base, 0, r->base.n, 0.99);
	res->ratio = median(&r->ratios);
	res->cfd_n = r->cfd.n;
	res->base_n = r->base.n;
	res->rounds = r->ratios.n;
	if (r->kind == ROW_ABSOLUTE) {
		x = res->cfd_med;
	} else if (r->unavailable[0]) {
		res->status = "n/a";
		return;
	} else {
		x = res->ratio;
	}
	if (r->op == TARGET_NONE) {
		res->status = "info";
		return;
	}
	if (isnan(x)) {
		res->status = "n/a";
		return;
	}
	switch (r->op) {
	case TARGET_LE:
		ok = x <= r->target;
		break;
	case TARGET_GE:
		ok = x >= r->target;
		break;
	default:
		ok = x < r->target;
		break;
	}
	res->status = ok && !r->failed[0] ? "met" : "MISSED";
}

static void fmt_value(char *buf, size_t len, double v, const char *unit)
{
	double a = fabs(v); /* an own cost above a baseline can be < 0 */

	if (strcmp(unit, "us") == 0) {
		/* Printed as the ns rows are. */
		unit = "ns";
		v *= 1e3;
		a *= 1e3;
	}
	if (isnan(v))
		snprintf(buf, len, "-");
	else if (strcmp(unit, "ns") != 0)
		snprintf(buf, len, "%.0f %s", v, unit);
	else if (a >= 1e6)
		snprintf(buf, len, "%.3f ms", v / 1e6);
	else if (a >= 1e4)
		snprintf(buf, len, "%.1f us", v / 1e3);
	else if (a >= 1e3)
		snprintf(buf, len, "%.2f us", v / 1e3);
	else if (a >= 100)
		snprintf(buf, len, "%.0f ns", v);
	else
		snprintf(buf, len, "%.1f ns", v);
}

static void fmt_target(char *buf, size_t len, const struct row *r)
{
	const char *u = r->kind == ROW_ABSOLUTE ? r->unit : "";

	if (r->kind == ROW_OWN) {
		if (r->budget > 0)
			snprintf(buf, len, "budget <= %g %s", r->budget,
				 r->unit);
		else
			snprintf(buf, len, "-");
		return;
	}
	switch (r->op) {
	case TARGET_LE:
		snprintf(buf, len, "<= %g%s%s", r->target, *u ? " " : "", u);
		break;
	case TARGET_GE:
		snprintf(buf, len, ">= %g", r->target);
		break;
	case TARGET_LT:
		snprintf(buf, len, "< %g", r->target);
		break;
	default:
		snprintf(buf, len, "-");
		break;
	}
}

/* Why the row has no baseline, or "". */
static const char *row_unavailable_why(const struct row *r)
{
	if (r->kind == ROW_OWN && r->how == OWN_ABOVE_BASE)
		return r->of->unavailable;
	return r->unavailable;
}

void report_table(FILE *f)
{
	const char *group = NULL;
	int note = 0, wname = 46, wtgt = 9;
	char tgt[48];

	/* The name and target columns are as wide as their widest entry. */
	for (size_t i = 0; i < nrows; i++) {
		int n = (int)strlen(rows[i]->name);

		fmt_target(tgt, sizeof(tgt), rows[i]);
		wname = n > wname ? n : wname;
		n = (int)strlen(tgt);
		wtgt = n > wtgt ? n : wtgt;
	}
	fprintf(f,
		"%-*s %10s %10s  %-30s %10s %7s %*s  %s\n"
		"%-*s %10s %10s  %-30s %10s %7s %*s  %s\n",
		wname, "row", "cancelfd", "p99", "baseline", "median", "ratio",
		wtgt, "target", "status", wname, "", "median", "", "", "", "",
		wtgt, "", "");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = rows[i];
		char med[24], p99[24], base[24], ratio[16], bname[80];
		const char *why = row_unavailable_why(r);
		struct result res;

		row_result(r, &res);
		if (!group || strcmp(group, r->group) != 0) {
			fprintf(f, "-- %s\n", r->group);
			group = r->group;
		}
		fmt_value(med, sizeof(med), res.cfd_med, r->unit);
		fmt_value(p99, sizeof(p99), res.cfd_p99, r->unit);
		fmt_value(base, sizeof(base), res.base_med, r->unit);
		if (isnan(res.ratio) || !row_has_baseline(r))
			snprintf(ratio, sizeof(ratio), "-");
		else
			snprintf(ratio, sizeof(ratio),
				 res.ratio < 10 ? "%.3f" : "%.1f", res.ratio);
		fmt_target(tgt, sizeof(tgt), r);
		if (r->kind == ROW_OWN && r->how == OWN_ABOVE_BASE)
			snprintf(bname, sizeof(bname), "minus %s", r->baseline);
		else
			snprintf(bname, sizeof(bname), "%s", r->baseline);
		fprintf(f, "%-*s %10s %10s  ", wname, r->name, med, p99);
		if (why[0])
			fprintf(f, "%-30s %10s", why, "-");
		else
			fprintf(f, "%-30s %10s", bname,
				r->kind == ROW_ABSOLUTE ? "-" : base);
		fprintf(f, " %7s %*s  %s", ratio, wtgt, tgt, res.status);
		if (r->failed[0])
			fprintf(f, " (%s)", r->failed);
		if (r->notes[0])
			fprintf(f, " [%d]", ++note);
		fputc('\n', f);
	}
	note = 0;
	for (size_t i = 0; i < nrows; i++)
		if (rows[i]->notes[0])
			fprintf(f, "[%d] %s: %s\n", ++note,
				rows[i]->name + strspn(rows[i]->name, " "),
				rows[i]->notes);
	fprintf(f, "ratio: median over rounds of (cancelfd median / baseline "
		   "median) in the same round; for throughput rows, baseline "
		   "time / cancelfd time (higher is better).\n"
		   "own cost: the library's own cost, from the rounds of the "
		   "row it explains, in the same run; its budget is the "
		   "issue's, from a faster host: shown, not judged.\n");
}

/* ---- JSON ---- */

void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_num(FILE *f, double v)
{
	if (isnan(v) || isinf(v))
		fputs("null", f);
	else
		fprintf(f, "%.6g", v);
}

static const char *op_name(enum row_target op)
{
	switch (op) {
	case TARGET_LE:
		return "<=";
	case TARGET_GE:
		return ">=";
	case TARGET_LT:
		return "<";
	default:
		return NULL;
	}
}

int report_json(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	fputs("{\n  \"machine\": ", f);
	machine_json(f);
	fputs(",\n  \"rows\": [\n", f);
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = rows[i];
		const char *why = row_unavailable_why(r);
		bool own = r->kind == ROW_OWN;
		struct result res;
		const char *kind = r->kind == ROW_TIME	       ? "time"
				   : r->kind == ROW_THROUGHPUT ? "throughput"
				   : own		       ? "own-cost"
							       : "absolute";

		row_result(r, &res);
		fputs("    {\"group\": ", f);
		json_str(f, r->group);
		fputs(", \"name\": ", f);
		json_str(f, r->name);
		fputs(", \"unit\": ", f);
		json_str(f, r->unit);
		fprintf(f, ", \"kind\": \"%s\",", kind);
		if (own) {
			/* Its figures are over the rounds of the row "of". */
			fputs("\n     \"of\": ", f);
			json_str(f, r->of->name);
			fprintf(f, ", \"per_round\": \"%s\",",
				r->how == OWN_ABOVE_BASE
				    ? "cancelfd median - baseline median"
				    : "cancelfd median");
		}
		fputs("\n     \"cancelfd\": {\"median\": ", f);
		json_num(f, res.cfd_med);
		fputs(", \"p99\": ", f);
		json_num(f, res.cfd_p99);
		fprintf(f, ", \"samples\": %zu}", res.cfd_n);
		fputs(",\n     \"baseline\": ", f);
		if (r->kind == ROW_ABSOLUTE ||
		    (own && r->how != OWN_ABOVE_BASE)) {
			fputs("null", f);
		} else {
			fputs("{\"name\": ", f);
			json_str(f, r->baseline);
			if (own)
				fputs(", \"subtracted\": true", f);
			if (why[0]) {
				fputs(", \"unavailable\": ", f);
				json_str(f, why);
			} else {
				fputs(", \"median\": ", f);
				json_num(f, res.base_med);
				fputs(", \"p99\": ", f);
				json_num(f, res.base_p99);
				fprintf(f, ", \"samples\": %zu", res.base_n);
			}
			fputs("}", f);
		}
		fputs(",\n     \"ratio\": ", f);
		json_num(f, row_has_baseline(r) ? res.ratio : NAN);
		fprintf(f, ", \"rounds\": %zu, \"target\": ", res.rounds);
		if (op_name(r->op)) {
			fputs("{\"op\": ", f);
			json_str(f, op_name(r->op));
			fputs(", \"value\": ", f);
			json_num(f, r->target);
			fputs("}", f);
		} else {
			fputs("null", f);
		}
		if (own && r->budget > 0) {
			/* Shown, never judged: the status stays "info". */
			fputs(", \"budget\": {\"op\": \"<=\", \"value\": ", f);
			json_num(f, r->budget);
			fputs("}", f);
		}
		fputs(", \"status\": ", f);
		json_str(f, res.status);
		if (r->failed[0]) {
			fputs(", \"failed\": ", f);
			json_str(f, r->failed);
		}
		if (r->notes[0]) {
			fputs(", \"note\": ", f);
			json_str(f, r->notes);
		}
		fprintf(f, "}%s\n", i + 1 < nrows ? "," : "");
	}
	fputs("  ]\n}\n", f);
	return fclose(f) ? -1 : 0;
}
