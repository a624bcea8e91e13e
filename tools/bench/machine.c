/* SPDX-License-Identifier: MIT */
/*
 * The machine a run was made on: CPU model, cores, kernel, compilers and
 * library versions, printed above the table and in the JSON.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench.h"

struct machine {
	char cpu[128];
	long cores;
	char kernel[400];
	char date[32];
};

static void read_cpu_model(char *buf, size_t len)
{
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (!colon || (strncmp(line, "model name", 10) != 0 &&
			       strncmp(line, "Model", 5) != 0))
			continue;
		colon++;
		while (*colon == ' ' || *colon == '\t')
			colon++;
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(buf, len, "%s", colon);
		break;
	}
	fclose(f);
}

static void machine_get(struct machine *m)
{
	struct utsname u;
	time_t t = time(NULL);
	struct tm tm;

	read_cpu_model(m->cpu, sizeof(m->cpu));
	m->cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (uname(&u) == 0)
		snprintf(m->kernel, sizeof(m->kernel), "%s %s %s", u.sysname,
			 u.release, u.machine);
	else
		snprintf(m->kernel, sizeof(m->kernel), "unknown");
	gmtime_r(&t, &tm);
	strftime(m->date, sizeof(m->date), "%Y-%m-%d %H:%M UTC", &tm);
}

static const char *c_compiler(void)
{
#if defined(__clang__)
	return "clang " __clang_version__;
#elif defined(__GNUC__)
	return "gcc " __VERSION__;
#else
	return "unknown";
#endif
}

static const char *threads_state(void)
{
	switch (process_single_threaded()) {
	case 0:
		return "multi-threaded";
	case 1:
		return "single-threaded";
	default:
		return "unknown";
	}
}

/* Compiler version strings may end in a space (clang's do). */
static const char *trimmed(const char *s)
{
	static char buf[2][160];
	static int k;
	char *b = buf[k++ % 2];
	size_t n;

	snprintf(b, sizeof(buf[0]), "%s", s);
	n = strlen(b);
	while (n && b[n - 1] == ' ')
		b[--n] = '\0';
	for (char *p = strstr(b, " ,"); p; p = strstr(b, " ,"))
		memmove(p, p + 1, strlen(p));
	return b;
}

void machine_print(FILE *f)
{
	struct machine m;

	machine_get(&m);
	fprintf(f, "cancelfd-bench %s, %s run, %s\n", CFD_BENCH_VERSION,
		opt.quick ? "quick (--quick: proves it works, numbers are "
			    "not meaningful)"
			  : "default",
		m.date);
	fprintf(f,
		"cpu:      %s, %ld online, cross-CPU rows on cpu %d -> "
		"cpu %d%s\n",
		m.cpu, m.cores, cpu_a, cpu_b,
		cpu_a == cpu_b ? " (one CPU: not cross-CPU)" : "");
	fprintf(f, "kernel:   %s\n", m.kernel);
	fprintf(f, "compiler: %s; C++: %s\n", trimmed(c_compiler()),
		trimmed(cxx_compiler()));
	fprintf(f, "libs:     liburing %s, GLib %s\n", CFD_BENCH_LIBURING,
		glib_version());
	fprintf(f,
		"process:  %s (an idle thread is started on purpose), "
		"RLIMIT_NOFILE %d\n\n",
		threads_state(), nofile_limit());
}

void machine_json(FILE *f)
{
	struct machine m;
	const char *keys[] = { "cpu",	   "kernel", "cc",   "cxx",
			       "liburing", "glib",   "date", "mode" };
	const char *vals[] = { m.cpu,
			       m.kernel,
			       trimmed(c_compiler()),
			       trimmed(cxx_compiler()),
			       CFD_BENCH_LIBURING,
			       glib_version(),
			       m.date,
			       opt.quick ? "quick" : "default" };

	machine_get(&m);
	fputc('{', f);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		fprintf(f, "\"%s\": ", keys[i]);
		json_str(f, vals[i]);
		fputs(", ", f);
	}
	fprintf(f,
		"\"cores\": %ld, \"cpus\": [%d, %d], \"nofile\": %d, "
		"\"threads\": ",
		m.cores, cpu_a, cpu_b, nofile_limit());
	json_str(f, threads_state());
	fputc('}', f);
}
