/*
 * Unit tests for xfilter.c: the XFILTER command, filter criteria (allowed
 * keys, canonical text, DAYSBEFORETODAY), dates and a device's filter set.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "imap_parse.h"
#include "suites.h"
#include "xfilter.h"

/* Parse "tag XFILTER <args>" and run xfilter_parse_command on it. */
static enum xfilter_result parse_cmd(const char *args, struct xfilter_cmd *out, char *err, size_t errlen)
{
	struct imap_limits lim = {65536, 65536, 128, 100000, 0};
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, &lim);
	char line[8192];
	int n = snprintf(line, sizeof(line), "t1 XFILTER %s\r\n", args);
	size_t used = 0;
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)line, (size_t)n, &used), IMAP_PARSE_DONE);
	const struct imap_msg *m = imap_parser_msg(p);
	err[0] = '\0';
	enum xfilter_result r = xfilter_parse_command(m->args + 1, m->nargs - 1, out, err, errlen);
	imap_parser_free(p);
	return r;
}

static void expect_ok(const char *args, const char *mailbox, unsigned which, const char *value)
{
	struct xfilter_cmd c;
	char err[512];
	enum xfilter_result r = parse_cmd(args, &c, err, sizeof(err));
	CU_ASSERT_EQUAL(r, XFILTER_OK);
	if (r != XFILTER_OK) {
		fprintf(stderr, "\n%s -> %s\n", args, err);
		return;
	}
	if (mailbox) {
		CU_ASSERT(c.mailbox && strcmp(c.mailbox, mailbox) == 0);
	} else {
		CU_ASSERT_PTR_NULL(c.mailbox);
	}
	CU_ASSERT_EQUAL(c.which, which);
	if (value) {
		CU_ASSERT(!c.get && c.value && strcmp(c.value, value) == 0);
		if (c.value && strcmp(c.value, value) != 0)
			fprintf(stderr, "\n%s -> [%s], want [%s]\n", args, c.value, value);
		/* the canonical text is valid stored text */
		CU_ASSERT_EQUAL(xfilter_check_text(c.value, err, sizeof(err)), XFILTER_OK);
	} else {
		CU_ASSERT(c.get && !c.value);
	}
	xfilter_cmd_free(&c);
}

static void expect_fail(const char *args, enum xfilter_result want, const char *fragment)
{
	struct xfilter_cmd c;
	char err[512];
	enum xfilter_result r = parse_cmd(args, &c, err, sizeof(err));
	CU_ASSERT_EQUAL(r, want);
	CU_ASSERT(strstr(err, fragment) != NULL);
	if (r != want || !strstr(err, fragment))
		fprintf(stderr, "\n%s -> %d [%s], want %d [%s]\n", args, r, err, want, fragment);
	if (r == XFILTER_OK)
		xfilter_cmd_free(&c);
}

static void test_command_forms(void)
{
	expect_ok("INBOX V DAYSBEFORETODAY 7", "INBOX", XFILTER_VIEW, "DAYSBEFORETODAY 7");
	expect_ok("inbox B FROM john SINCE 1-jun-2003", "INBOX", XFILTER_BOTH, "FROM \"john\" SINCE 1-Jun-2003");
	expect_ok("ALL V GET", NULL, XFILTER_VIEW, NULL);
	expect_ok("\"ALL\" N NONE", "ALL", XFILTER_NOTIFY, "NONE");
	expect_ok("Archive/2020 V ALL", "Archive/2020", XFILTER_VIEW, "ALL");
	expect_ok("INBOX N DAYSBEFORETODAY0", "INBOX", XFILTER_NOTIFY, "DAYSBEFORETODAY 0");
	expect_ok("INBOX V (FROM a TO b) larger 10", "INBOX", XFILTER_VIEW, "(FROM \"a\" TO \"b\") LARGER 10");
	expect_ok("INBOX V OR FROM a DAYSBEFORETODAY 3", "INBOX", XFILTER_VIEW, "OR FROM \"a\" DAYSBEFORETODAY 3");
	expect_ok("INBOX V NOT NOT DAYSBEFORETODAY 3", "INBOX", XFILTER_VIEW, "NOT NOT DAYSBEFORETODAY 3");
	expect_ok("INBOX V HEADER X-Priority \"1\" SENTBEFORE 01-Jan-2000 ON 9-Sep-2001 NOT SMALLER 5",
	          "INBOX", XFILTER_VIEW, "HEADER \"X-Priority\" \"1\" SENTBEFORE 1-Jan-2000 ON 9-Sep-2001 NOT SMALLER 5");
	expect_ok("INBOX V SUBJECT \"a \\\"quoted\\\" word\" BODY x TEXT y CC c BCC d SENTSINCE 1-Jan-2020 SENTON 2-Feb-2020 BEFORE 3-Mar-2020",
	          "INBOX", XFILTER_VIEW,
	          "SUBJECT \"a \\\"quoted\\\" word\" BODY \"x\" TEXT \"y\" CC \"c\" BCC \"d\" SENTSINCE 1-Jan-2020 "
	          "SENTON 2-Feb-2020 BEFORE 3-Mar-2020");
}

static void test_refusals(void)
{
	expect_fail("INBOX X ALL", XFILTER_BAD, "V (view), N (notification) or B (both)");
	expect_fail("INBOX V", XFILTER_BAD, "XFILTER needs a mailbox");
	expect_fail("INBOX V SEEN", XFILTER_REFUSED, "SEEN depends on flags");
	expect_fail("INBOX V FROM a OR UNSEEN FLAGGED", XFILTER_REFUSED, "UNSEEN depends on flags");
	expect_fail("INBOX V KEYWORD $Label1", XFILTER_REFUSED, "KEYWORD depends on flags");
	expect_fail("INBOX V MODSEQ 5", XFILTER_REFUSED, "MODSEQ depends on flags");
	expect_fail("INBOX V NOT DAYSBEFORETODAY 3", XFILTER_REFUSED, "cannot be negated");
	expect_fail("INBOX V NOT (FROM a OR TO b DAYSBEFORETODAY 3)", XFILTER_REFUSED, "cannot be negated");
	expect_fail("INBOX V 1:5", XFILTER_REFUSED, "cannot name messages by number");
	expect_fail("INBOX V UID 5", XFILTER_REFUSED, "by UID");
	expect_fail("INBOX V YOUNGER 3600", XFILTER_REFUSED, "DAYSBEFORETODAY");
	expect_fail("INBOX V FOO", XFILTER_BAD, "unknown search key FOO");
	expect_fail("INBOX V FROM", XFILTER_BAD, "FROM needs 1 argument");
	expect_fail("INBOX V OR FROM a", XFILTER_BAD, "OR needs two search keys");
	expect_fail("INBOX V NOT", XFILTER_BAD, "NOT needs a search key");
	expect_fail("INBOX V SINCE 30-Feb-2024", XFILTER_BAD, "needs a date like 1-Feb-2024");
	expect_fail("INBOX V SINCE 2024-02-01", XFILTER_BAD, "needs a date");
	expect_fail("INBOX V LARGER ten", XFILTER_BAD, "LARGER needs a number");
	expect_fail("INBOX V DAYSBEFORETODAY", XFILTER_BAD, "needs a number of days");
	expect_fail("INBOX V DAYSBEFORETODAY 99999", XFILTER_BAD, "at most");
	expect_fail("INBOX V \"FROM\" a", XFILTER_BAD, "expected a search key");
	expect_fail("INBOX V NONE FROM a", XFILTER_BAD, "unknown search key NONE");
	expect_fail("INBOX V ()", XFILTER_BAD, "empty criteria");
	/* nesting beyond the limit */
	char deep[512] = "INBOX V ";
	for (int i = 0; i < XFILTER_MAX_DEPTH + 2; i++)
		strcat(deep, "(");
	strcat(deep, "ALL");
	for (int i = 0; i < XFILTER_MAX_DEPTH + 2; i++)
		strcat(deep, ")");
	expect_fail(deep, XFILTER_BAD, "nested deeper");
}

/* A non-ASCII string is kept as a LITERAL+ literal; GET shows the response form. */
static void test_literal_strings(void)
{
	struct imap_limits lim = {65536, 65536, 128, 100000, 0};
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, &lim);
	static const char line[] = "t XFILTER INBOX N FROM {7+}\r\nM\xc3\xbcller\r\n";
	size_t used;
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)line, sizeof(line) - 1, &used), IMAP_PARSE_DONE);
	const struct imap_msg *m = imap_parser_msg(p);
	struct xfilter_cmd c;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(xfilter_parse_command(m->args + 1, m->nargs - 1, &c, err, sizeof(err)), XFILTER_OK);
	CU_ASSERT_STRING_EQUAL(c.value, "FROM {7+}\r\nM\xc3\xbcller");
	CU_ASSERT(xfilter_needs_utf8(c.value));
	CU_ASSERT(!xfilter_needs_utf8("FROM \"x\""));
	CU_ASSERT_EQUAL(xfilter_check_text(c.value, err, sizeof(err)), XFILTER_OK);
	struct buf out;
	buf_init(&out, 0);
	xfilter_response_text(c.value, &out);
	char *s = buf_str(&out);
	CU_ASSERT_STRING_EQUAL(s, "FROM {7}\r\nM\xc3\xbcller");
	free(s);
	buf_clear(&out);
	CU_ASSERT_EQUAL(xfilter_resolve(c.value, 0, &out), 0);
	s = buf_str(&out);
	CU_ASSERT_STRING_EQUAL(s, "FROM {7+}\r\nM\xc3\xbcller");
	free(s);
	buf_free(&out);
	xfilter_cmd_free(&c);
	imap_parser_free(p);
}

static void test_dates(void)
{
	long d;
	CU_ASSERT(xfilter_civil_day(1970, 1, 1, &d) && d == 0);
	CU_ASSERT(xfilter_civil_day(2024, 2, 29, &d));
	CU_ASSERT(!xfilter_civil_day(2023, 2, 29, &d));
	CU_ASSERT(!xfilter_civil_day(2024, 4, 31, &d));
	CU_ASSERT(xfilter_civil_day(2000, 2, 29, &d));
	CU_ASSERT(!xfilter_civil_day(1900, 2, 29, &d));
	CU_ASSERT(xfilter_parse_date("1-Jan-1970", 10, &d) && d == 0);
	CU_ASSERT(xfilter_parse_date("01-jan-1970", 11, &d) && d == 0);
	CU_ASSERT(!xfilter_parse_date("1-Jan-70", 8, &d));
	CU_ASSERT(!xfilter_parse_date("1-Foo-1970", 10, &d));
	CU_ASSERT(!xfilter_parse_date("123-Jan-1970", 12, &d));
	char out[16];
	for (long day = -800; day < 40000; day += 37) {
		long back;
		xfilter_format_date(day, out, sizeof(out));
		CU_ASSERT(xfilter_parse_date(out, strlen(out), &back) && back == day);
	}
	CU_ASSERT(xfilter_civil_day(2024, 3, 10, &d));
	xfilter_format_date(d, out, sizeof(out));
	CU_ASSERT_STRING_EQUAL(out, "10-Mar-2024");
	/* a year under 1000 keeps four digits (found by fuzz_xfilter) */
	CU_ASSERT(xfilter_parse_date("01-Jan-0985", 11, &d));
	xfilter_format_date(d, out, sizeof(out));
	CU_ASSERT_STRING_EQUAL(out, "1-Jan-0985");
	for (long day = -719162; day < -700000; day += 997) {
		long back;
		xfilter_format_date(day, out, sizeof(out));
		CU_ASSERT(xfilter_parse_date(out, strlen(out), &back) && back == day);
	}
	CU_ASSERT(xfilter_today(0) >= -1 && xfilter_today(0) <= 0);
}

static char *resolve(const char *text, long today)
{
	struct buf out;
	buf_init(&out, 0);
	CU_ASSERT_EQUAL(xfilter_resolve(text, today, &out), 0);
	char *s = buf_str(&out);
	buf_free(&out);
	return s;
}

static void test_resolve_and_aging(void)
{
	long today;
	CU_ASSERT_FATAL(xfilter_civil_day(2024, 3, 10, &today));
	char *s = resolve("DAYSBEFORETODAY 7 NOT LARGER 100", today);
	CU_ASSERT_STRING_EQUAL(s, "SINCE 3-Mar-2024 NOT LARGER 100");
	free(s);
	s = resolve("ALL", today);
	CU_ASSERT_STRING_EQUAL(s, "ALL");
	free(s);
	s = resolve("NONE", today);
	CU_ASSERT_STRING_EQUAL(s, "NOT ALL");
	free(s);
	s = resolve("DAYSBEFORETODAY 0", today);
	CU_ASSERT_STRING_EQUAL(s, "SINCE 10-Mar-2024");
	free(s);
	CU_ASSERT(xfilter_uses_days("OR FROM \"a\" DAYSBEFORETODAY 2"));
	CU_ASSERT(!xfilter_uses_days("FROM \"a\""));
	CU_ASSERT(!xfilter_uses_days("ALL"));

	struct buf out;
	buf_init(&out, 0);
	CU_ASSERT_EQUAL(xfilter_aging_keys("DAYSBEFORETODAY 7", today, today + 1, &out), 0);
	s = buf_str(&out);
	CU_ASSERT_STRING_EQUAL(s, "SINCE 3-Mar-2024 BEFORE 4-Mar-2024 NOT (SINCE 4-Mar-2024)");
	free(s);
	buf_clear(&out);
	/* two horizons: the band covers both; three days passed */
	CU_ASSERT_EQUAL(xfilter_aging_keys("OR DAYSBEFORETODAY 2 (FROM \"b\" DAYSBEFORETODAY 30)", today, today + 3,
	                                   &out), 0);
	s = buf_str(&out);
	CU_ASSERT_STRING_EQUAL(s, "SINCE 9-Feb-2024 BEFORE 11-Mar-2024 NOT (OR SINCE 11-Mar-2024 (FROM \"b\" "
	                          "SINCE 12-Feb-2024))");
	free(s);
	buf_clear(&out);
	CU_ASSERT_EQUAL(xfilter_aging_keys("FROM \"x\"", today, today + 1, &out), 0);
	CU_ASSERT_EQUAL(buf_len(&out), 0);
	CU_ASSERT_EQUAL(xfilter_aging_keys("DAYSBEFORETODAY 7", today, today, &out), 0);
	CU_ASSERT_EQUAL(buf_len(&out), 0);
	CU_ASSERT_EQUAL(xfilter_resolve("FROM", today, &out), -1);
	buf_free(&out);
}

static void test_stored_text(void)
{
	char err[256];
	CU_ASSERT_EQUAL(xfilter_check_text("ALL", err, sizeof(err)), XFILTER_OK);
	CU_ASSERT_EQUAL(xfilter_check_text("NONE", err, sizeof(err)), XFILTER_OK);
	CU_ASSERT_EQUAL(xfilter_check_text("FROM \"a\" DAYSBEFORETODAY 3", err, sizeof(err)), XFILTER_OK);
	CU_ASSERT_EQUAL(xfilter_check_text("SEEN", err, sizeof(err)), XFILTER_REFUSED);
	CU_ASSERT_EQUAL(xfilter_check_text("FROM \"a", err, sizeof(err)), XFILTER_BAD);
	CU_ASSERT_EQUAL(xfilter_check_text("", err, sizeof(err)), XFILTER_BAD);
	struct buf out;
	buf_init(&out, 0);
	xfilter_response_text("HEADER \"X-A\" \"b\"", &out);
	char *s = buf_str(&out);
	CU_ASSERT_STRING_EQUAL(s, "HEADER \"X-A\" \"b\"");
	free(s);
	buf_free(&out);
}

static void test_search_keys(void)
{
	struct imap_arg a = {.type = IMAP_ARG_ATOM, .str = "1:5,7:*", .len = 7};
	CU_ASSERT(xfilter_is_sequence_set(&a));
	a.str = "$";
	a.len = 1;
	CU_ASSERT(xfilter_is_sequence_set(&a));
	a.str = "FROM";
	a.len = 4;
	CU_ASSERT(!xfilter_is_sequence_set(&a));
	const struct xfilter_key *k = xfilter_key_lookup(&a);
	CU_ASSERT(k && k->nargs == 1 && k->cls == XFK_IMMUTABLE);
	a.str = "header";
	a.len = 6;
	k = xfilter_key_lookup(&a);
	CU_ASSERT(k && k->nargs == 2);
	a.str = "UID";
	a.len = 3;
	k = xfilter_key_lookup(&a);
	CU_ASSERT(k && k->arg[0] == XFA_SET);
	a.str = "X-NOPE";
	a.len = 6;
	CU_ASSERT_PTR_NULL(xfilter_key_lookup(&a));
}

static void test_filter_set(void)
{
	struct xfilter_set s;
	xfilter_set_init(&s);
	CU_ASSERT_STRING_EQUAL(xfilter_set_get(&s, "INBOX", XFILTER_VIEW), "ALL");
	CU_ASSERT(!xfilter_set_has_views(&s));
	xfilter_set_put(&s, "INBOX", XFILTER_VIEW, "DAYSBEFORETODAY 7");
	xfilter_set_put(&s, "INBOX", XFILTER_NOTIFY, "FROM \"boss\"");
	xfilter_set_put(&s, "Trash", XFILTER_BOTH, "NONE");
	CU_ASSERT(xfilter_set_has_views(&s));
	CU_ASSERT_STRING_EQUAL(xfilter_set_get(&s, "INBOX", XFILTER_VIEW), "DAYSBEFORETODAY 7");
	CU_ASSERT_STRING_EQUAL(xfilter_set_get(&s, "Trash", XFILTER_NOTIFY), "NONE");
	CU_ASSERT_STRING_EQUAL(xfilter_set_get(&s, "Sent", XFILTER_VIEW), "ALL");
	xfilter_set_put(&s, "", XFILTER_VIEW, "NOT LARGER 10");
	/* ALL's view replaced every folder's own view, not the notification filters */
	CU_ASSERT_STRING_EQUAL(xfilter_set_get(&s, "INBOX", XFILTER_VIEW), "NOT LARGER 10");
	CU_ASSERT_STRING_EQUAL(xfilter_set_get(&s, "Sent", XFILTER_VIEW), "NOT LARGER 10");
	CU_ASSERT_STRING_EQUAL(xfilter_set_get(&s, "INBOX", XFILTER_NOTIFY), "FROM \"boss\"");
	xfilter_set_put(&s, "Sent", XFILTER_VIEW, "ALL");
	CU_ASSERT_STRING_EQUAL(xfilter_set_get(&s, "Sent", XFILTER_VIEW), "ALL");
	struct buf keys;
	buf_init(&keys, 0);
	CU_ASSERT(xfilter_push_keys(&s, "INBOX", 19800, &keys));
	char *k = buf_str(&keys);
	CU_ASSERT_STRING_EQUAL(k, "(NOT LARGER 10) (FROM \"boss\")");
	free(k);
	buf_clear(&keys);
	CU_ASSERT(!xfilter_push_keys(&s, "Trash", 19800, &keys));
	CU_ASSERT(xfilter_push_keys(&s, "Sent", 19800, &keys));
	k = buf_str(&keys);
	CU_ASSERT_STRING_EQUAL(k, "ALL"); /* Sent: its own view ALL, the default notification filter */
	free(k);
	buf_free(&keys);
	xfilter_set_put(&s, "", XFILTER_VIEW, NULL);
	CU_ASSERT_STRING_EQUAL(xfilter_set_get(&s, "INBOX", XFILTER_VIEW), "ALL");
	CU_ASSERT(!xfilter_set_has_views(&s));
	xfilter_set_free(&s);
}

void suite_xfilter(void)
{
	ADD_SUITE("xfilter",
	          {"command forms and canonical criteria", test_command_forms},
	          {"refusals: syntax BAD, mutable keys and negated days NO", test_refusals},
	          {"non-ASCII strings as literals", test_literal_strings},
	          {"dates", test_dates},
	          {"DAYSBEFORETODAY resolved; the aging band", test_resolve_and_aging},
	          {"stored text", test_stored_text},
	          {"search key table", test_search_keys},
	          {"a device's filter set", test_filter_set});
}
