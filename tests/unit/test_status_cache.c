/*
 * Unit tests for status_cache.c: which folder STATUS is known to be
 * current, merging pushes from several links, RECENT, and the answer's
 * form (Dovecot's item order, the folder name as the client wrote it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "imap_parse.h"
#include "status_cache.h"
#include "suites.h"

static void learn(struct status_cache *sc, uint64_t source, const char *selected, bool pushed, const char *line)
{
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_RESPONSES, NULL);
	size_t used;
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)line, strlen(line), &used), IMAP_PARSE_DONE);
	CU_ASSERT(status_cache_learn(sc, "alice", source, selected, pushed, imap_parser_msg(p)));
	imap_parser_free(p);
}

/* The answer to a client command for alice, or NULL. */
static char *ask(const struct status_cache *sc, const char *cmd)
{
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, NULL);
	char line[512];
	size_t used;
	snprintf(line, sizeof(line), "t %s\r\n", cmd);
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)line, strlen(line), &used), IMAP_PARSE_DONE);
	struct buf out;
	buf_init(&out, 0);
	char *res = status_cache_answer(sc, "alice", imap_parser_msg(p), "t", &out) ? buf_str(&out) : NULL;
	buf_free(&out);
	imap_parser_free(p);
	return res;
}

static void expect(const struct status_cache *sc, const char *cmd, const char *want)
{
	char *got = ask(sc, cmd);
	if (!want) {
		CU_ASSERT_PTR_NULL(got);
		if (got)
			fprintf(stderr, "\n  %s: answered %s\n", cmd, got);
	} else if (!got || strcmp(got, want) != 0) {
		CU_FAIL("answer differs");
		fprintf(stderr, "\n  %s:\n  got  %s\n  want %s\n", cmd, got ? got : "(refused)", want);
	}
	free(got);
}

#define FULL "* STATUS Archive (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 77 UNSEEN 0 HIGHESTMODSEQ 1)\r\n"

static void test_coverage(void)
{
	struct status_cache *sc = status_cache_new();
	/* not pushed (a client's own STATUS on a link without the watch): values, no coverage */
	learn(sc, 1, NULL, false, FULL);
	expect(sc, "STATUS Archive (MESSAGES)", NULL);
	/* pushed, complete, not selected there: covered */
	learn(sc, 1, "INBOX", true, FULL);
	expect(sc, "STATUS Archive (UIDNEXT MESSAGES UNSEEN RECENT)",
	       "* STATUS Archive (MESSAGES 0 RECENT 0 UIDNEXT 1 UNSEEN 0)\r\nt OK Status completed.\r\n");
	expect(sc, "STATUS \"Archive\" (UIDVALIDITY HIGHESTMODSEQ)",
	       "* STATUS Archive (UIDVALIDITY 77 HIGHESTMODSEQ 1)\r\nt OK Status completed.\r\n");
	/* SIZE and unknown items go upstream; so does a folder never seen */
	expect(sc, "STATUS Archive (SIZE)", NULL);
	expect(sc, "STATUS Archive (MESSAGES SIZE)", NULL);
	expect(sc, "STATUS Other (MESSAGES)", NULL);
	expect(sc, "STATUS Archive ()", NULL);
	/* new mail: RECENT no longer provably 0 */
	learn(sc, 1, "INBOX", true, "* STATUS Archive (MESSAGES 1 UIDNEXT 2 UNSEEN 1 HIGHESTMODSEQ 2)\r\n");
	expect(sc, "STATUS Archive (MESSAGES)", "* STATUS Archive (MESSAGES 1)\r\nt OK Status completed.\r\n");
	expect(sc, "STATUS Archive (RECENT)", NULL);
	/* a client's STATUS said RECENT 0 at this UIDNEXT: 0 until new mail */
	learn(sc, 1, "INBOX", true, "* STATUS Archive (MESSAGES 1 RECENT 0 UIDNEXT 2)\r\n");
	expect(sc, "STATUS Archive (RECENT)", "* STATUS Archive (RECENT 0)\r\nt OK Status completed.\r\n");
	learn(sc, 1, "INBOX", true, "* STATUS Archive (MESSAGES 2 UIDNEXT 3 UNSEEN 2 HIGHESTMODSEQ 3)\r\n");
	expect(sc, "STATUS Archive (RECENT)", NULL);
	/* the link selects the folder: no longer covered */
	status_cache_selected(sc, "alice", 1, "Archive");
	expect(sc, "STATUS Archive (MESSAGES)", NULL);
	/* a partial push (flag change) does not cover again; a complete one from another link does */
	learn(sc, 1, "INBOX", true, "* STATUS Archive (UNSEEN 1 HIGHESTMODSEQ 4)\r\n");
	expect(sc, "STATUS Archive (UNSEEN)", NULL);
	learn(sc, 2, NULL, true, "* STATUS Archive (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 77 UNSEEN 1 HIGHESTMODSEQ 4)\r\n");
	expect(sc, "STATUS Archive (UNSEEN)", "* STATUS Archive (UNSEEN 1)\r\nt OK Status completed.\r\n");
	status_cache_source_gone(sc, 2);
	expect(sc, "STATUS Archive (UNSEEN)", NULL);
	CU_ASSERT_EQUAL(status_cache_count(sc), 1);
	status_cache_free(sc);
}

static void test_order_and_names(void)
{
	struct status_cache *sc = status_cache_new();
	learn(sc, 1, NULL, true, "* STATUS INBOX (MESSAGES 5 UIDNEXT 9 UIDVALIDITY 3 UNSEEN 2 HIGHESTMODSEQ 40)\r\n");
	learn(sc, 2, NULL, true, "* STATUS INBOX (MESSAGES 5 UIDNEXT 9 UIDVALIDITY 3 UNSEEN 2 HIGHESTMODSEQ 40)\r\n");
	/* a late push from another link (older HIGHESTMODSEQ) changes nothing */
	learn(sc, 2, NULL, true, "* STATUS INBOX (MESSAGES 4 UIDNEXT 8 UIDVALIDITY 3 UNSEEN 1 HIGHESTMODSEQ 30)\r\n");
	/* INBOX in any case; the name echoed as written */
	expect(sc, "STATUS inbox (UNSEEN MESSAGES)", "* STATUS inbox (MESSAGES 5 UNSEEN 2)\r\nt OK Status completed.\r\n");
	/* names that need quoting */
	learn(sc, 1, NULL, true, "* STATUS \"a b\" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 9 UNSEEN 0 HIGHESTMODSEQ 1)\r\n");
	expect(sc, "STATUS \"a b\" (MESSAGES)", "* STATUS \"a b\" (MESSAGES 0)\r\nt OK Status completed.\r\n");
	/* a new UIDVALIDITY forgets the folder's coverage and values */
	learn(sc, 1, NULL, false, "* STATUS INBOX (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 4)\r\n");
	expect(sc, "STATUS INBOX (MESSAGES)", NULL);
	/* not a STATUS response */
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_RESPONSES, NULL);
	size_t used;
	const char *line = "* 3 EXISTS\r\n";
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)line, strlen(line), &used), IMAP_PARSE_DONE);
	CU_ASSERT(!status_cache_learn(sc, "alice", 1, NULL, true, imap_parser_msg(p)));
	imap_parser_free(p);
	status_cache_free(sc);
}

static void test_bounds(void)
{
	struct status_cache *sc = status_cache_new();
	char line[128];
	for (unsigned i = 0; i < STATUS_CACHE_MAX_FOLDERS + 10; i++) {
		snprintf(line, sizeof(line), "* STATUS f%u (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 3)\r\n", i);
		learn(sc, 1, NULL, true, line);
	}
	CU_ASSERT_EQUAL(status_cache_count(sc), STATUS_CACHE_MAX_FOLDERS);
	expect(sc, "STATUS f0 (MESSAGES)", NULL); /* the least recently updated went first */
	snprintf(line, sizeof(line), "STATUS f%u (MESSAGES)", STATUS_CACHE_MAX_FOLDERS + 9);
	char *got = ask(sc, line);
	CU_ASSERT_PTR_NOT_NULL(got);
	free(got);
	status_cache_free(sc);
}

void suite_status_cache(void)
{
	ADD_SUITE("status_cache", {"which folders are covered, RECENT", test_coverage},
	          {"item order, names, late pushes, UIDVALIDITY", test_order_and_names},
	          {"folder bound", test_bounds});
}
