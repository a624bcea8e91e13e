/* SPDX-License-Identifier: MIT */
/*
 * io-uring.c: cancelfd in an io_uring loop, with IORING_OP_POLL_ADD.
 *
 * One-shot polls on the watcher's fd and on a token's fd.  When the
 * watcher's completes, dispatch and poll it again; when the token's
 * completes, the job is cancelled.  (To cancel operations already pending
 * in the ring, see <cancelfd-uring.h>.)
 *
 *   cc io-uring.c $(pkg-config --cflags --libs cancelfd liburing)
 */
#include <cancelfd.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>

enum { WATCHER = 1, TOKEN = 2 };

static void poll_fd(struct io_uring *ring, int fd, uint64_t tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, tag);
}

int main(void)
{
	struct cfd_watcher *w;
	struct cfd_token *job;
	struct io_uring ring;
	int running = 1, reason, r;

	r = io_uring_queue_init(8, &ring, 0);
	if (r < 0) {
		fprintf(stderr, "io_uring unavailable: %d\n", r);
		return 77; /* skipped */
	}
	if (cfd_watcher_new(&w) < 0 || cfd_token_new(&job, "job") < 0)
		return 1;
	cfd_source_add_timeout(NULL, job, w, CFD_MSEC(20));

	poll_fd(&ring, cfd_watcher_fd(w), WATCHER);
	poll_fd(&ring, cfd_token_fd(job), TOKEN);
	while (running) {
		struct io_uring_cqe *cqe;

		io_uring_submit_and_wait(&ring, 1);
		while (io_uring_peek_cqe(&ring, &cqe) == 0) {
			if (io_uring_cqe_get_data64(cqe) == WATCHER) {
				cfd_watcher_dispatch(w);
				poll_fd(&ring, cfd_watcher_fd(w), WATCHER);
			} else {
				running = 0; /* the job was cancelled */
			}
			io_uring_cqe_seen(&ring, cqe);
		}
	}
	reason = cfd_token_reason(job);
	printf("job cancelled: %s\n", cfd_reason_name(reason));

	io_uring_queue_exit(&ring);
	cfd_token_unref(job);
	cfd_watcher_unref(w);
	return reason == CFD_REASON_TIMEOUT ? 0 : 1;
}
