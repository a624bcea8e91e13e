/* SPDX-License-Identifier: MIT */
#ifndef CFD_WIRE_H
#define CFD_WIRE_H

/*
 * What crosses a process boundary with a token (wire.c): the cause record
 * an export's pipe carries when the token triggers (or goes untriggered),
 * and the deadline that goes with an export (CANCELFD_DEADLINE, the
 * message of cfd_token_send()).  Decoding treats every byte as untrusted.
 *
 * The cause record, host byte order (both ends are on one host), at most
 * WIRE_MAX bytes so that one write(2) to a pipe is atomic:
 *   0  "CFD" 0x01   magic and version
 *   4  u16 size     of the whole record
 *   6  u8  type     WIRE_CAUSE, WIRE_GONE
 *   7  u8  reason   the origin's CFD_REASON_*
 *   8  u8  signo
 *   9  u8  flags    0
 *  10  u16 path_len
 *  12  u16 msg_len
 *  14  u16 0
 *  16  i32 code
 *  20  i32 pid      the process the cascade started in
 *  24  i64 age_ns   how long before the write it triggered
 *  32  path, then message (not NUL-terminated)
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MAX 4096
#define WIRE_HEAD 32
#define WIRE_PATH_MAX 1024 /* longer paths and messages are cut */
#define WIRE_MSG_MAX 2048

enum wire_type {
	WIRE_CAUSE = 1, /* the token triggered, with this cause */
	WIRE_GONE = 2,	/* the token was freed untriggered */
};

struct wire_cause {
	int type;
	int reason;
	int signo;
	int32_t code;
	int32_t pid;
	int64_t age_ns;
	/* NUL-terminated, printable (decoded), or NULL */
	char path[WIRE_PATH_MAX + 1];
	char message[WIRE_MSG_MAX + 1];
	bool has_path, has_message;
};

/* Encode c into buf (WIRE_MAX bytes): the record's size. */
size_t wire_encode(const struct wire_cause *c, unsigned char *buf);
/* Decode n bytes: 0, or -EPROTO for anything but one whole valid record
 * (trailing bytes included). */
int wire_decode(const unsigned char *buf, size_t n, struct wire_cause *c);

/* A deadline as remaining time, with the CLOCK_REALTIME instant it was
 * measured at, so that the receiver takes off what passed in between
 * (CLOCK_MONOTONIC differs between clock namespaces; CLOCK_REALTIME does
 * not).  remaining < 0: none. */
struct wire_deadline {
	int64_t remaining_ns;
	int64_t realtime_ns;
};

/* The deadline (CLOCK_MONOTONIC, INT64_MAX: none) as a wire deadline. */
struct wire_deadline wire_deadline_out(int64_t deadline);
/* Back to a CLOCK_MONOTONIC deadline of this process, INT64_MAX: none. */
int64_t wire_deadline_in(struct wire_deadline d);

/* "remaining@realtime", as CANCELFD_DEADLINE carries it: format into buf
 * (64 bytes), parse (0 or -EINVAL). */
void wire_deadline_format(struct wire_deadline d, char *buf, size_t size);
int wire_deadline_parse(const char *s, struct wire_deadline *d);

/* The message of cfd_token_send(): magic and a wire deadline. */
#define WIRE_SEND_SIZE 24
void wire_send_encode(struct wire_deadline d, unsigned char *buf);
int wire_send_decode(const unsigned char *buf, size_t n,
		     struct wire_deadline *d);

#endif
