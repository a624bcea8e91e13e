/* SPDX-License-Identifier: MIT */
/*
 * Encoding and decoding of what crosses a process boundary (wire.h).
 * Pure functions but for the clocks: the import and export code does the
 * reading and writing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "wire.h"

static const unsigned char wire_magic[4] = { 'C', 'F', 'D', 1 };

_Static_assert(WIRE_HEAD + WIRE_PATH_MAX + WIRE_MSG_MAX <= WIRE_MAX,
	       "a record fits in one atomic pipe write");

static void put16(unsigned char *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void put32(unsigned char *p, int32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void put64(unsigned char *p, int64_t v)
{
	memcpy(p, &v, sizeof(v));
}

static uint16_t get16(const unsigned char *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static int32_t get32(const unsigned char *p)
{
	int32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static int64_t get64(const unsigned char *p)
{
	int64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

size_t wire_encode(const struct wire_cause *c, unsigned char *buf)
{
	size_t lp = c->has_path ? strnlen(c->path, WIRE_PATH_MAX) : 0;
	size_t lm = c->has_message ? strnlen(c->message, WIRE_MSG_MAX) : 0;
	size_t size = WIRE_HEAD + lp + lm;

	memset(buf, 0, WIRE_HEAD);
	memcpy(buf, wire_magic, sizeof(wire_magic));
	put16(buf + 4, (uint16_t)size);
	buf[6] = (unsigned char)c->type;
	buf[7] = (unsigned char)c->reason;
	buf[8] = (unsigned char)c->signo;
	put16(buf + 10, (uint16_t)lp);
	put16(buf + 12, (uint16_t)lm);
	put32(buf + 16, c->code);
	put32(buf + 20, c->pid);
	put64(buf + 24, c->age_ns);
	memcpy(buf + WIRE_HEAD, c->path, lp);
	memcpy(buf + WIRE_HEAD + lp, c->message, lm);
	return size;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	/* no overlong forms, no surrogates, nothing past U+10FFFF */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/* Copy n bytes of text from a peer, printable: control characters and
 * invalid UTF-8 become '?'. */
static void copy_printable(char *dst, const unsigned char *src, size_t n)
{
	size_t i = 0, o = 0;

	while (i < n) {
		size_t len = utf8_len(src + i, n - i);

		if (len == 1 && (src[i] < 0x20 || src[i] == 0x7f))
			len = 0;
		if (len == 0) {
			dst[o++] = '?';
			i++;
			continue;
		}
		memcpy(dst + o, src + i, len);
		o += len;
		i += len;
	}
	dst[o] = '\0';
}

int wire_decode(const unsigned char *buf, size_t n, struct wire_cause *c)
{
	size_t size, lp, lm;

	if (n < WIRE_HEAD || memcmp(buf, wire_magic, sizeof(wire_magic)))
		return -EPROTO;
	size = get16(buf + 4);
	lp = get16(buf + 10);
	lm = get16(buf + 12);
	if (size != n || size > WIRE_MAX || lp > WIRE_PATH_MAX ||
	    lm > WIRE_MSG_MAX || size != WIRE_HEAD + lp + lm)
		return -EPROTO;
	c->type = buf[6];
	c->reason = buf[7];
	c->signo = buf[8];
	c->code = get32(buf + 16);
	c->pid = get32(buf + 20);
	c->age_ns = get64(buf + 24);
	if (c->type != WIRE_CAUSE && c->type != WIRE_GONE)
		return -EPROTO;
	if (c->type == WIRE_CAUSE &&
	    (c->reason < CFD_REASON_MANUAL || c->reason > REASON_LAST))
		return -EPROTO;
	if (c->signo >= _NSIG || c->pid < 0)
		return -EPROTO;
	if (c->age_ns < 0)
		c->age_ns = 0;
	c->has_path = lp > 0;
	c->has_message = lm > 0;
	copy_printable(c->path, buf + WIRE_HEAD, lp);
	copy_printable(c->message, buf + WIRE_HEAD + lp, lm);
	return 0;
}

/* ---- deadlines ---- */

static int64_t realtime_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct wire_deadline wire_deadline_out(int64_t deadline)
{
	struct wire_deadline d = { -1, realtime_now() };
	int64_t now;

	if (deadline == INT64_MAX)
		return d;
	now = cfd_now();
	d.remaining_ns = deadline > now ? deadline - now : 0;
	return d;
}

int64_t wire_deadline_in(struct wire_deadline d)
{
	int64_t passed, left, now = cfd_now();

	if (d.remaining_ns < 0)
		return INT64_MAX;
	/* Take off what passed since it was measured, unless the clock was
	 * set meanwhile (then it says nothing). */
	passed = realtime_now() - d.realtime_ns;
	left = d.remaining_ns;
	if (passed > 0 && passed < left)
		left -= passed;
	else if (passed >= left)
		left = 0;
	return left > INT64_MAX - now ? INT64_MAX - 1 : now + left;
}

void wire_deadline_format(struct wire_deadline d, char *buf, size_t size)
{
	snprintf(buf, size, "%" PRId64 "@%" PRId64, d.remaining_ns,
		 d.realtime_ns);
}

/* A decimal integer, optionally negative, ending at end; 0 or -EINVAL. */
static int parse_int64(const char *s, const char *end, int64_t *v)
{
	bool neg = *s == '-';
	uint64_t x = 0;

	if (neg)
		s++;
	if (s == end)
		return -EINVAL;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9' || x > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	if (x > (uint64_t)INT64_MAX)
		return -EINVAL;
	*v = neg ? -(int64_t)x : (int64_t)x;
	return 0;
}

int wire_deadline_parse(const char *s, struct wire_deadline *d)
{
	const char *at = strchr(s, '@');

	/* "remaining" alone, as a person or a script writes it: measured
	 * now */
	if (!at) {
		if (parse_int64(s, s + strlen(s), &d->remaining_ns) < 0)
			return -EINVAL;
		d->realtime_ns = realtime_now();
	} else if (parse_int64(s, at, &d->remaining_ns) < 0 ||
		   parse_int64(at + 1, at + strlen(at), &d->realtime_ns) < 0) {
		return -EINVAL;
	}
	if (d->remaining_ns < 0)
		d->remaining_ns = -1;
	return 0;
}

static const unsigned char send_magic[8] = { 'C', 'F', 'D', 's',
					     'e', 'n', 'd', 1 };

void wire_send_encode(struct wire_deadline d, unsigned char *buf)
{
	memcpy(buf, send_magic, sizeof(send_magic));
	put64(buf + 8, d.remaining_ns);
	put64(buf + 16, d.realtime_ns);
}

int wire_send_decode(const unsigned char *buf, size_t n,
		     struct wire_deadline *d)
{
	if (n != WIRE_SEND_SIZE || memcmp(buf, send_magic, sizeof(send_magic)))
		return -EPROTO;
	d->remaining_ns = get64(buf + 8);
	d->realtime_ns = get64(buf + 16);
	if (d->remaining_ns < 0)
		d->remaining_ns = -1;
	return 0;
}
