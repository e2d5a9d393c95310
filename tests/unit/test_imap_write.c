/* Unit tests for imap_write.c: astrings and re-tagged relayed commands. */
#include "config.h"

#include <string.h>

#include <CUnit/CUnit.h>

#include "imap_parse.h"
#include "imap_write.h"
#include "suites.h"

static void expect_buf(struct buf *b, const char *want)
{
	CU_ASSERT_EQUAL(buf_len(b), strlen(want));
	CU_ASSERT(buf_len(b) == strlen(want) && memcmp(buf_head(b), want, buf_len(b)) == 0);
	buf_clear(b);
}

static void test_astring(void)
{
	struct buf b;
	buf_init(&b, 0);
	imap_write_astring(&b, "alice", 5);
	expect_buf(&b, "\"alice\"");
	imap_write_astring(&b, "a\"b\\c", 5);
	expect_buf(&b, "\"a\\\"b\\\\c\"");
	imap_write_astring(&b, "", 0);
	expect_buf(&b, "\"\"");
	/* CR, LF, NUL and 8-bit bytes cannot be quoted: a LITERAL+ carries them exactly. */
	imap_write_astring(&b, "p\r\nw", 4);
	expect_buf(&b, "{4+}\r\np\r\nw");
	imap_write_astring(&b, "p\0w", 3);
	CU_ASSERT_EQUAL(buf_len(&b), 9);
	CU_ASSERT(memcmp(buf_head(&b), "{3+}\r\np\0w", 9) == 0);
	buf_clear(&b);
	imap_write_astring(&b, "gr\xc3\xbc\xc3\x9f", 6);
	expect_buf(&b, "{6+}\r\ngr\xc3\xbc\xc3\x9f");
	buf_free(&b);
}

/* Quoted passwords written by imap_write_astring parse back to the same bytes. */
static void test_astring_round_trip(void)
{
	static const char *const samples[] = {"secret", "with space", "q\"uote", "back\\slash", "(paren)", "{5}", "%*"};
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		struct buf b;
		buf_init(&b, 0);
		buf_append_str(&b, "a LOGIN ");
		imap_write_astring(&b, samples[i], strlen(samples[i]));
		buf_append_str(&b, "\r\n");
		struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, &(struct imap_limits){
			.max_line_length = 1024, .max_literal_size = 1024, .max_list_depth = 8, .max_args = 100});
		size_t used = 0;
		CU_ASSERT_EQUAL(imap_parser_feed(p, buf_head(&b), buf_len(&b), &used), IMAP_PARSE_DONE);
		const struct imap_msg *m = imap_parser_msg(p);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		CU_ASSERT_EQUAL(m->nargs, 2);
		CU_ASSERT_EQUAL(m->args[1].len, strlen(samples[i]));
		CU_ASSERT(memcmp(m->args[1].str, samples[i], m->args[1].len) == 0);
		imap_parser_free(p);
		buf_free(&b);
	}
}

static void test_find_sync_literals(void)
{
	const char *cmd = "a APPEND INBOX {5}\r\nhello {3+}\r\nabc ~{2}\r\nxy\r\n";
	size_t ends[4], sizes[4];
	int n = imap_find_sync_literals((const uint8_t *)cmd, strlen(cmd), ends, sizes, 4);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_EQUAL(ends[0], strlen("a APPEND INBOX {5}\r\n"));
	CU_ASSERT_EQUAL(sizes[0], 5);
	CU_ASSERT_EQUAL(ends[1], strlen("a APPEND INBOX {5}\r\nhello {3+}\r\nabc ~{2}\r\n"));
	CU_ASSERT_EQUAL(sizes[1], 2);
	CU_ASSERT_EQUAL(imap_find_sync_literals((const uint8_t *)cmd, strlen(cmd), ends, sizes, 1), -1);
	/* A brace inside literal data is data, not a header. */
	const char *tricky = "a X {6}\r\n{9}\r\n\r\n";
	CU_ASSERT_EQUAL(imap_find_sync_literals((const uint8_t *)tricky, strlen(tricky), ends, sizes, 4), 1);
}

/* For an upstream without LITERAL+: every literal synchronising, found at the same places. */
static void test_literals_sync(void)
{
	struct buf b;
	buf_init(&b, 0);
	const char *cmd = "a APPEND INBOX {5+}\r\nhello {3}\r\nabc ~{2+}\r\nxy\r\n";
	CU_ASSERT_EQUAL(imap_write_literals_sync(&b, (const uint8_t *)cmd, strlen(cmd)), 3);
	expect_buf(&b, "a APPEND INBOX {5}\r\nhello {3}\r\nabc ~{2}\r\nxy\r\n");
	size_t ends[4], sizes[4];
	bool nonsync[4];
	CU_ASSERT_EQUAL(imap_find_literals((const uint8_t *)cmd, strlen(cmd), ends, sizes, nonsync, 4), 3);
	CU_ASSERT(nonsync[0] && !nonsync[1] && nonsync[2]);
	CU_ASSERT_EQUAL(sizes[2], 2);
	const char *none = "a NOOP {x}\r\n";
	CU_ASSERT_EQUAL(imap_write_literals_sync(&b, (const uint8_t *)none, strlen(none)), 0);
	expect_buf(&b, none);
	/* A size running past the command's end stops the scan (never a wrap-around). */
	const char *cut = "a X {18446744073709551615+}\r\nab {2}\r\n";
	CU_ASSERT_EQUAL(imap_find_literals((const uint8_t *)cut, strlen(cut), ends, sizes, nonsync, 4), 1);
	buf_free(&b);
}

static void test_retagged(void)
{
	struct buf b;
	buf_init(&b, 0);
	const char *cmd = "client7 APPEND INBOX (\\Seen) {5}\r\nhello {2+}\r\nhi\r\n";
	CU_ASSERT_EQUAL(imap_write_retagged(&b, "G12", (const uint8_t *)cmd, strlen(cmd), 7), 0);
	expect_buf(&b, "G12 APPEND INBOX (\\Seen) {5+}\r\nhello {2+}\r\nhi\r\n");
	const char *plain = "t NOOP\r\n";
	CU_ASSERT_EQUAL(imap_write_retagged(&b, "", (const uint8_t *)plain, strlen(plain), 1), 0);
	expect_buf(&b, " NOOP\r\n");
	/* literal8 keeps its tilde */
	static const char bin[] = "t APPEND X ~{3}\r\na\0b\r\n";
	static const char bin_out[] = "G1 APPEND X ~{3+}\r\na\0b\r\n";
	CU_ASSERT_EQUAL(imap_write_retagged(&b, "G1", (const uint8_t *)bin, sizeof(bin) - 1, 1), 0);
	CU_ASSERT_EQUAL(buf_len(&b), sizeof(bin_out) - 1);
	CU_ASSERT(buf_len(&b) == sizeof(bin_out) - 1 && memcmp(buf_head(&b), bin_out, sizeof(bin_out) - 1) == 0);
	buf_clear(&b);
	/* Over the segment limit: refused, nothing written. */
	struct buf many;
	buf_init(&many, 0);
	buf_append_str(&many, "t X");
	for (int i = 0; i <= IMAP_MAX_LITERAL_SEGMENTS; i++)
		buf_append_str(&many, " {1}\r\nx");
	buf_append_str(&many, "\r\n");
	CU_ASSERT_EQUAL(imap_write_retagged(&b, "G1", buf_head(&many), buf_len(&many), 1), -1);
	CU_ASSERT_EQUAL(buf_len(&b), 0);
	buf_free(&many);
	buf_free(&b);
}

static void test_mailbox(void)
{
	struct buf b;
	buf_init(&b, 0);
	imap_write_mailbox(&b, "INBOX", true);
	expect_buf(&b, "INBOX");
	imap_write_mailbox(&b, "Sent Items", false);
	expect_buf(&b, "\"Sent Items\"");
	imap_write_mailbox(&b, "", true);
	expect_buf(&b, "\"\"");
	/* 8-bit: a literal, synchronising in a response, LITERAL+ in a command */
	imap_write_mailbox(&b, "Entw\xc3\xbcrfe", true);
	expect_buf(&b, "{9}\r\nEntw\xc3\xbcrfe");
	imap_write_mailbox(&b, "Entw\xc3\xbcrfe", false);
	expect_buf(&b, "{9+}\r\nEntw\xc3\xbcrfe");
	/* "[" and "]" quoted: bare, "a[b" reads as the start of a BODY[...]
	 * section (fuzz_roundtrip: tests/fuzz/corpus/roundtrip/regress-mailbox-bracket). */
	imap_write_mailbox(&b, "a[b", true);
	expect_buf(&b, "\"a[b\"");
	imap_write_mailbox(&b, "x]", false);
	expect_buf(&b, "\"x]\"");
	buf_free(&b);
}

void suite_imap_write(void)
{
	ADD_SUITE("imap_write",
	          {"astring quoting and literals", test_astring},
	          {"astring round trip through the parser", test_astring_round_trip},
	          {"sync literal headers", test_find_sync_literals},
	          {"every literal made synchronising", test_literals_sync},
	          {"re-tagged commands with LITERAL+", test_retagged},
	          {"mailbox names for commands and responses", test_mailbox});
}
