/* SPDX-License-Identifier: MIT */
/*
 * Python rows: the package cancelfd, measured by tools/bench/python-bench.py
 * (run here with the interpreter and the module of this build) against
 * asyncio's own primitives and a pure-Python token, round by round.
 *
 * The script prints one line per row and round, "R <row> <cancelfd ns>
 * <baseline ns>" (the round's medians), which become one sample each; the
 * row's ratio is the median over rounds of the per-round ratio, as for
 * every other row.  Without the module (no Python headers at configure
 * time) the rows are unavailable, with a note.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const struct prow {
	const char *id;
	const char *name;
	const char *baseline;
	enum row_kind kind;
	enum row_target op;
	double target;
} prows[] = {
	{ "triggered", "py: token.triggered, chain 10 deep", NULL, ROW_ABSOLUTE,
	  TARGET_LE, 100 },
	{ "triggered-py", "  same vs pure-Python token",
	  "pure-Python, walks the chain", ROW_TIME, TARGET_NONE, 0 },
	{ "wake", "py: await wait() <- trigger() in a thread",
	  "add_reader(eventfd) <- write", ROW_TIME, TARGET_LE, 1.1 },
	{ "wake-py", "  same vs pure-Python token",
	  "pure-Python Event, threadsafe", ROW_TIME, TARGET_NONE, 0 },
	{ "cwait", "py: cancellable_wait(finished future)",
	  "await wait_for(fut, None)", ROW_TIME, TARGET_LE, 3 },
	{ "cwait-py", "  same vs pure-Python token",
	  "pure-Python: task + asyncio.wait", ROW_TIME, TARGET_NONE, 0 },
};
#define NPROWS (sizeof(prows) / sizeof(prows[0]))

void rows_python(void)
{
	struct row *rows[NPROWS];
	char cmd[4096], line[256];
	FILE *p;
	int got = 0;

	for (size_t i = 0; i < NPROWS; i++)
		rows[i] =
		    row_new("python", prows[i].name, "ns", prows[i].baseline,
			    prows[i].kind, prows[i].op, prows[i].target);
	/* The script starts threads of its own: every CPU. */
	unpin_self();
	if (!HAVE_PYTHON) {
		for (size_t i = 0; i < NPROWS; i++)
			row_unavailable(rows[i], "no Python module");
		row_note(rows[0], "the Python module was not built (meson "
				  "found no Python 3 headers, or "
				  "-Dpython=disabled): rows skipped");
		return;
	}
	snprintf(cmd, sizeof(cmd),
		 "PYTHONPATH='%s' PYTHONDONTWRITEBYTECODE=1 '%s' '%s' --raw%s",
		 CFD_BENCH_PYTHONPATH, CFD_BENCH_PYTHON, CFD_BENCH_PYSCRIPT,
		 opt.quick ? " --quick" : "");
	fflush(stdout);
	p = popen(cmd, "r");
	if (!p)
		die("cannot run %s", CFD_BENCH_PYSCRIPT);
	while (fgets(line, sizeof(line), p)) {
		char id[32], cs[32], bs[32];

		if (sscanf(line, "R %31s %31s %31s", id, cs, bs) != 3)
			continue;
		for (size_t i = 0; i < NPROWS; i++) {
			struct row *r = rows[i];

			if (strcmp(prows[i].id, id) == 0) {
				row_round_begin(r);
				row_cfd(r, strtod(cs, NULL));
				if (strcmp(bs, "-") != 0)
					row_base(r, strtod(bs, NULL));
				row_round_end(r);
				got++;
			}
		}
	}
	if (pclose(p) != 0 || got == 0)
		for (size_t i = 0; i < NPROWS; i++)
			row_fail(rows[i], "python-bench.py failed");
}
