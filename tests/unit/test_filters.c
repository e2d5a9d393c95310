/*
 * Unit tests for filters.c: filter files (filters/NAME.yaml), their errors with
 * positions, which rule applies to a folder, and the XFILTER commands that
 * bring a gateway's table in step; and proxy_count.c's held LIST-STATUS
 * answer (compatibility mode counts filtered folders on the side).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "filters.h"
#include "proxy_count.h"
#include "suites.h"
#include "xfilter.h"

static struct filter_set *load(const char *yaml)
{
	char err[512] = "";
	struct filter_set *set = filter_set_load_string("f.yaml", yaml, strlen(yaml), err, sizeof(err));
	if (!set)
		fprintf(stderr, "\nunexpected error: %s\n", err);
	CU_ASSERT_PTR_NOT_NULL(set);
	return set;
}

static void expect_error(const char *yaml, const char *want)
{
	char err[512] = "";
	struct filter_set *set = filter_set_load_string("f.yaml", yaml, strlen(yaml), err, sizeof(err));
	CU_ASSERT_PTR_NULL(set);
	CU_ASSERT(strstr(err, want) != NULL);
	if (set || !strstr(err, want))
		fprintf(stderr, "\n%s\n-> [%s]\n want [%s]\n", yaml, err, want);
	filter_set_free(set);
}

/* The shipped files, as a user would use them. */
static char *shipped(const char *name)
{
	char path[1024];
	const char *src = getenv("top_srcdir");
	snprintf(path, sizeof(path), "%s/filters/%s", src ? src : "..", name);
	FILE *f = fopen(path, "rb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	static char data[65536];
	size_t n = fread(data, 1, sizeof(data) - 1, f);
	fclose(f);
	data[n] = '\0';
	return data;
}

static void test_mobile(void)
{
	struct filter_set *set = load(shipped("mobile.yaml"));
	if (!set)
		return;
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "INBOX", XFILTER_VIEW), "DAYSBEFORETODAY 14");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "inbox", XFILTER_VIEW), "DAYSBEFORETODAY 14");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "INBOX", XFILTER_NOTIFY),
	                       "(OR (FROM \"boss@example.com\") (FROM \"family@example.org\"))");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "Junk", XFILTER_VIEW), "NONE");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "Trash", XFILTER_NOTIFY), "NONE");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "Sent", XFILTER_VIEW), "ALL");
	CU_ASSERT_STRING_EQUAL(filter_set_events(set), "ALL");
	CU_ASSERT(filter_set_has_views(set));
	CU_ASSERT(filter_set_has_notify(set));
	filter_set_free(set);
	set = load(shipped("metered.yaml"));
	if (!set)
		return;
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "INBOX", XFILTER_VIEW), "NOT LARGER 1048576");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "Archive/2019", XFILTER_VIEW), "NOT LARGER 1048576");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "INBOX", XFILTER_NOTIFY), "ALL");
	CU_ASSERT_PTR_NULL(filter_set_events(set));
	CU_ASSERT(!filter_set_has_notify(set));
	filter_set_free(set);
	/* a notification rule alone */
	set = load("folders:\n  INBOX:\n    notify: {from: boss@example.com}\n");
	CU_ASSERT(!filter_set_has_views(set));
	CU_ASSERT(filter_set_has_notify(set));
	filter_set_free(set);
}

static void test_conditions(void)
{
	struct filter_set *set = load("folders:\n"
	                              "  INBOX:\n"
	                              "    view:\n"
	                              "      days: 7\n"
	                              "      since: 2024-02-29\n"
	                              "      before: 1-Mar-2025\n"
	                              "      min_size: 10\n"
	                              "      max_size: 500K\n"
	                              "      from: [a, b, c]\n"
	                              "      subject: report\n"
	                              "      header: {X-Priority: '1', List-Id: [dev, ops]}\n"
	                              "      search: OR TO x CC y\n"
	                              "    notify: none\n"
	                              "  Lists/*:\n"
	                              "    view: {days: 30}\n"
	                              "  Lists/dev:\n"
	                              "    view: all\n"
	                              "  \"*\":\n"
	                              "    notify: {}\n");
	if (!set)
		return;
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "INBOX", XFILTER_VIEW),
	                       "DAYSBEFORETODAY 7 SINCE 29-Feb-2024 BEFORE 1-Mar-2025 NOT LARGER 512000 "
	                       "NOT SMALLER 10 (OR (FROM \"a\") (OR (FROM \"b\") (FROM \"c\"))) (SUBJECT \"report\") "
	                       "(HEADER \"X-Priority\" \"1\") (OR (HEADER \"List-Id\" \"dev\") (HEADER \"List-Id\" \"ops\")) "
	                       "(OR TO \"x\" CC \"y\")");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "INBOX", XFILTER_NOTIFY), "NONE");
	/* exact names win over globs; globs in file order */
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "Lists/dev", XFILTER_VIEW), "ALL");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "Lists/ops", XFILTER_VIEW), "DAYSBEFORETODAY 30");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "Other", XFILTER_VIEW), "ALL");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "Other", XFILTER_NOTIFY), "ALL");
	CU_ASSERT_EQUAL(filter_set_count(set), 4);
	filter_set_free(set);
	/* an empty file is no filter at all */
	set = load("# nothing\n");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "INBOX", XFILTER_VIEW), "ALL");
	CU_ASSERT(!filter_set_has_views(set));
	filter_set_free(set);
	/* excluded globs come before everything */
	set = load("exclude: 'Spam*'\nfolders:\n  '*': {view: {days: 3}}\n  Spam: {view: all}\n");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "Spam", XFILTER_VIEW), "NONE");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "Spam2", XFILTER_NOTIFY), "NONE");
	CU_ASSERT_STRING_EQUAL(filter_set_value(set, "Ham", XFILTER_VIEW), "DAYSBEFORETODAY 3");
	filter_set_free(set);
}

static void test_errors(void)
{
	expect_error("colour: blue\n", "f.yaml:1:1: unknown key 'colour' in the filter file");
	expect_error("folders:\n  INBOX:\n    view:\n      dayz: 7\n", "f.yaml:4:7: unknown key 'dayz' in folders.INBOX.view");
	expect_error("folders:\n  INBOX:\n    view:\n      days: ten\n",
	             "f.yaml:4:13: folders.INBOX.view.days: expected a number of days (0 to 36500), got ten");
	expect_error("folders:\n  INBOX:\n    view:\n      from: {a: b}\n",
	             "f.yaml:4:13: folders.INBOX.view.from: expected a string or a list of strings, got a mapping");
	expect_error("folders:\n  INBOX:\n    view:\n      since: 2024-02-30\n",
	             "f.yaml:4:14: folders.INBOX.view.since: '2024-02-30' is not a date (write 2024-03-01)");
	expect_error("folders:\n  INBOX:\n    view:\n      unread: true\n",
	             "f.yaml:4:7: folders.INBOX.view: 'unread' depends on flags, which change");
	expect_error("folders:\n  INBOX:\n    notify:\n      search: FROM x SEEN\n",
	             "f.yaml:4:7: folders.INBOX.notify: SEEN depends on flags, which change");
	expect_error("folders:\n  INBOX:\n    view: some\n",
	             "f.yaml:3:11: folders.INBOX.view: expected all, none or a mapping of conditions, got 'some'");
	expect_error("folders:\n  INBOX:\n    view: {max_size: huge}\n",
	             "f.yaml:3:22: folders.INBOX.view.max_size: expected a size such as 500K or 1M, got huge");
	expect_error("folders:\n  INBOX: {view: all}\n  inbox: {view: none}\n", "f.yaml:3:3: folders: 'inbox' is given twice");
	expect_error("events: sometimes\n", "f.yaml:1:9: events: expected all, new or none, got 'sometimes'");
	expect_error("folders: [INBOX]\n", "f.yaml:1:10: folders: expected a mapping of folder names (or globs) to rules");
	expect_error("folders:\n  INBOX: {view: {from: []}}\n", "folders.INBOX.view.from: the list is empty");
	expect_error("folders:\n  INBOX:\n    view: {days: 3\n", "f.yaml:4:1: YAML syntax error");
	expect_error("events: all\n---\nevents: new\n", "f.yaml:3:1: only one YAML document is allowed");
	expect_error("- a\n", "f.yaml:1:1: the top level must be a mapping");
	expect_error("folders:\n  INBOX:\n    view: {search: 'NOT DAYSBEFORETODAY 3'}\n", "cannot be negated");
	char err[256];
	CU_ASSERT_PTR_NULL(filter_set_load_file("/nonexistent/filters.yaml", err, sizeof(err)));
	CU_ASSERT(strstr(err, "/nonexistent/filters.yaml: cannot open") != NULL);
}

static char *joined(char **cmds, size_t n)
{
	static char out[8192];
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		strcat(out, cmds[i]);
		strcat(out, ";");
	}
	return out;
}

static void test_sync(void)
{
	struct filter_set *set = load("exclude: [Junk]\nfolders:\n  INBOX:\n    view: {days: 14}\n"
	                              "    notify: {from: boss}\n  'Lists/*':\n    view: {days: 30}\n"
	                              "  '*':\n    view: {max_size: 1M}\n");
	struct xfilter_set table;
	xfilter_set_init(&table);
	/* the gateway holds an old rule for a folder the file now leaves to "*" */
	xfilter_set_put(&table, "Old", XFILTER_VIEW, "FROM \"x\"");
	char **cmds;
	size_t n = filter_sync_login(set, &table, &cmds);
	CU_ASSERT_STRING_EQUAL(joined(cmds, n), "XFILTER ALL V NOT LARGER 1048576;XFILTER Junk V NONE;"
	                                        "XFILTER Junk N NONE;XFILTER INBOX V DAYSBEFORETODAY 14;"
	                                        "XFILTER INBOX N (FROM \"boss\");");
	filter_free_commands(cmds, n);
	/* ALL replaced Old's own view at the gateway: nothing more to say, and a second run says nothing */
	n = filter_sync_login(set, &table, &cmds);
	CU_ASSERT_EQUAL(n, 0);
	filter_free_commands(cmds, n);
	/* a glob folder is set when it is selected, once */
	n = filter_sync_mailbox(set, &table, "Lists/dev", &cmds);
	CU_ASSERT_STRING_EQUAL(joined(cmds, n), "XFILTER Lists/dev V DAYSBEFORETODAY 30;");
	filter_free_commands(cmds, n);
	n = filter_sync_mailbox(set, &table, "Lists/dev", &cmds);
	CU_ASSERT_EQUAL(n, 0);
	filter_free_commands(cmds, n);
	n = filter_sync_mailbox(set, &table, "Sent", &cmds);
	CU_ASSERT_EQUAL(n, 0);
	filter_free_commands(cmds, n);
	/* a folder named ALL is quoted, not every folder */
	struct filter_set *set2 = load("folders:\n  ALL: {view: none}\n");
	n = filter_sync_mailbox(set2, &table, "ALL", &cmds);
	CU_ASSERT_STRING_EQUAL(joined(cmds, n), "XFILTER \"ALL\" V NONE;");
	filter_free_commands(cmds, n);
	/* the file without rules: the gateway's table goes back to ALL */
	struct filter_set *empty = load("");
	n = filter_sync_login(empty, &table, &cmds);
	CU_ASSERT_STRING_EQUAL(joined(cmds, n), "XFILTER ALL V ALL;XFILTER Junk N ALL;XFILTER INBOX N ALL;");
	filter_free_commands(cmds, n);
	filter_set_free(empty);
	filter_set_free(set2);
	xfilter_set_free(&table);
	filter_set_free(set);
}

/* A LIST-STATUS answer: lines go out in order, each counted STATUS in its place, as soon as what is
 * before it is known; a count that failed leaves its line out. */
static void test_hold(void)
{
	struct pcount_hold *h = pcount_hold_new();
	struct buf out;
	buf_init(&out, 0);
	CU_ASSERT(!pcount_hold_active(h));
	const char *l2 = "* LIST () \".\" Junk\r\n", *l3 = "* LIST () \".\" Sent\r\n";
	const char *s3 = "* STATUS Sent (MESSAGES 9)\r\n";
	size_t a = pcount_hold_slot(h);
	pcount_hold_raw(h, (const uint8_t *)l2, strlen(l2));
	size_t b = pcount_hold_slot(h);
	pcount_hold_raw(h, (const uint8_t *)l3, strlen(l3));
	pcount_hold_raw(h, (const uint8_t *)s3, strlen(s3));
	CU_ASSERT(pcount_hold_active(h) && pcount_hold_waiting(h));
	pcount_hold_drain(h, &out);
	CU_ASSERT_EQUAL(buf_len(&out), 0);
	/* the second count first: nothing can go yet */
	pcount_hold_fill(h, b, NULL, 0);
	pcount_hold_drain(h, &out);
	CU_ASSERT_EQUAL(buf_len(&out), 0);
	CU_ASSERT(pcount_hold_waiting(h));
	const char *sa = "* STATUS INBOX (MESSAGES 3)\r\n";
	pcount_hold_fill(h, a, (const uint8_t *)sa, strlen(sa));
	pcount_hold_fill(h, a, (const uint8_t *)"again", 5); /* filled once */
	CU_ASSERT(!pcount_hold_waiting(h));
	pcount_hold_drain(h, &out);
	buf_append(&out, "", 1);
	char want[512];
	snprintf(want, sizeof(want), "%s%s%s", sa, l2, l3);
	strcat(want, s3);
	CU_ASSERT_STRING_EQUAL((const char *)buf_head(&out), want);
	CU_ASSERT(!pcount_hold_active(h));
	pcount_hold_free(h);
	buf_free(&out);
}

void suite_filters(void)
{
	ADD_SUITE("filters",
	          {"shipped files: mobile.yaml, metered.yaml", test_mobile},
	          {"conditions and which rule applies", test_conditions},
	          {"errors name file:line:column and what is wrong", test_errors},
	          {"keeping a gateway's table in step", test_sync},
	          {"compatibility mode: a LIST-STATUS answer held in order", test_hold});
}
