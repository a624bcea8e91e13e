/* SPDX-License-Identifier: MIT */
/*
 * Description: the token (lib/token.c): life cycle, trigger and the cause,
 * check, wait, the lazily made fd, and argument errors.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

START_TEST(test_new_and_name)
{
	struct cfd_token *tok = NULL;

	ck_assert_int_eq(cfd_token_new(&tok, "demo"), 0);
	ck_assert_str_eq(cfd_token_name(tok), "demo");
	ck_assert(!cfd_token_triggered(tok));
	ck_assert_int_eq(cfd_token_check(tok), 0);
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_NONE);
	ck_assert_ptr_null(cfd_token_origin(tok));
	ck_assert_ptr_null(cfd_token_unref(tok));
}
END_TEST

START_TEST(test_trigger_first_wins)
{
	struct cfd_token *tok;

	ck_assert_int_eq(cfd_token_new(&tok, "demo"), 0);
	ck_assert_int_eq(cfd_token_trigger_msg(tok, "first"), 1);
	ck_assert_int_eq(cfd_token_trigger_msg(tok, "second"), 0);
	ck_assert_int_eq(cfd_token_trigger(tok), 0);
	ck_assert(cfd_token_triggered(tok));
	ck_assert_int_eq(cfd_token_check(tok), -ECANCELED);
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_MANUAL);
	ck_assert_ptr_eq(cfd_token_origin(tok), tok);
	ck_assert_str_eq(cfd_token_message(tok), "first");
	ck_assert_int_eq(cfd_token_signal(tok), 0);
	ck_assert_int_gt(cfd_token_trigger_time(tok), 0);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_fd_born_readable_after_trigger)
{
	struct cfd_token *tok;
	int fd;

	ck_assert_int_eq(cfd_token_new(&tok, "late-fd"), 0);
	cfd_token_trigger(tok);
	fd = cfd_token_fd(tok);
	ck_assert_int_ge(fd, 0);
	ck_assert(t_fd_readable(fd, 0));
	ck_assert_int_eq(cfd_token_fd(tok), fd); /* one fd per token */
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_einval)
{
	struct cfd_token *tok = (struct cfd_token *)0x1;

	ck_assert_int_eq(cfd_token_new(NULL, "x"), -EINVAL);
	ck_assert_int_eq(cfd_token_trigger(NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_check(NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_wait(NULL, 0), -EINVAL);
	ck_assert_int_eq(cfd_token_fd(NULL), -EINVAL);
	ck_assert_ptr_eq(tok, (struct cfd_token *)0x1); /* untouched */
	ck_assert_ptr_null(cfd_token_unref(NULL));
}
END_TEST

static Suite *token_suite(void)
{
	Suite *s = suite_create("token");
	TCase *tc = t_tcase("basics");

	tcase_add_test(tc, test_new_and_name);
	tcase_add_test(tc, test_trigger_first_wins);
	tcase_add_test(tc, test_fd_born_readable_after_trigger);
	tcase_add_test(tc, test_einval);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(token_suite());
}
