/* SPDX-License-Identifier: MIT */
/*
 * cancelfd-bench: main.  Parses the options, prints the machine, runs every
 * group of rows (each interleaves the library with its baselines), then
 * prints the table and writes --json.
 *
 *   cancelfd-bench            default run (under two minutes on 2 cores)
 *   cancelfd-bench --quick    every row briefly: proves the tool works
 *   cancelfd-bench --json F   also write the numbers to F
 *   cancelfd-bench --only G   only the groups G (comma-separated)
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

struct opts opt;

static const struct group {
	const char *name;
	void (*run)(void);
	const char *what;
} groups[] = {
	/* Memory first, before the other rows have grown the heap. */
	{ "memory", rows_memory, "memory per fd-less token" },
	{ "life", rows_life, "create + free" },
	{ "fanout", rows_fanout, "fan-out to fd-less descendants" },
	{ "fanout-fd", rows_fanout_fd, "fan-out to descendants with fds" },
	{ "wake", rows_wake, "trigger -> poll wake, cross-CPU" },
	{ "uring", rows_uring, "io_uring" },
	{ "timer", rows_timer, "timeouts" },
	{ "export", rows_export, "across processes; the deadline" },
	{ "python", rows_python, "the Python package (python-bench.py)" },
};

bool group_enabled(const char *group)
{
	const char *p = opt.only;
	size_t len = strlen(group);

	if (!p)
		return true;
	while (*p) {
		size_t n = strcspn(p, ",");

		if (n == len && strncmp(p, group, len) == 0)
			return true;
		p += n;
		if (*p == ',')
			p++;
	}
	return false;
}

void progress(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cancelfd-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: cancelfd-bench [--quick] [--json FILE] "
		   "[--only GROUP[,GROUP...]]\n"
		   "groups:");
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		fprintf(f, " %s", groups[i].name);
	fputc('\n', f);
}

int main(int argc, char **argv)
{
	int64_t t0 = now_ns();

	if (argc == 2 && strcmp(argv[1], HELPER_ARG) == 0)
		return helper_main();
	opt.argv0 = argv[0];
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			opt.quick = true;
		} else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
			opt.json = argv[++i];
		} else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
			opt.only = argv[++i];
		} else if (strcmp(argv[i], "--help") == 0 ||
			   strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	sys_init();
	/* The rows run "in a process where other threads run". */
	start_idle_thread();
	if (helper_start() < 0 && cxx_available())
		progress("note: the single-threaded C++ helper did not "
			 "start\n");
	machine_print(stdout);
	fflush(stdout);

	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		int64_t g0 = now_ns();

		if (!group_enabled(groups[i].name))
			continue;
		progress("%-10s %s ...", groups[i].name, groups[i].what);
		groups[i].run();
		progress(" %.1f s\n", (double)(now_ns() - g0) / 1e9);
	}
	helper_stop();

	report_table(stdout);
	printf("total time: %.1f s\n", (double)(now_ns() - t0) / 1e9);
	if (opt.json) {
		if (report_json(opt.json) < 0)
			die("cannot write %s", opt.json);
		printf("json: %s\n", opt.json);
	}
	return 0;
}
