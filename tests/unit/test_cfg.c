/*
 * test_cfg.c - the YAML config loader (cfg.c) against a small table of every
 * type, and the daemons' real tables (proxy_config.c, gateway_config.c) with
 * their example files.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "cfg_equal.h"
#include "gateway_config.h"
#include "proxy_config.h"
#include "suites.h"

/* ---- a test table with one key of every type ---------------------------- */

enum colour { RED, GREEN, BLUE };
static const char *const colours[] = {"red", "green", "blue", NULL};

struct tconf {
	char      *name;    /* name */
	char     **tags;    /* tags */
	bool       verbose; /* opts.verbose */
	long long  count;   /* opts.count */
	long long  offset;  /* opts.offset: negative bounds */
	size_t     size;    /* limits.size */
	double     timeout; /* limits.timeout */
	int        colour;  /* colour */
	char      *deep;    /* a.b.c: three levels */
	bool       late;    /* opts.late: "opts" again after other sections */
};

#define TOFF(f) offsetof(struct tconf, f)
#define GIB_D 1073741824.0

static const struct cfg_key tkeys[] = {
	{"name", CFG_STRING, TOFF(name), "anon", 0, 0, NULL, false, "who"},
	{"tags", CFG_STRLIST, TOFF(tags), "x, y", 0, 0, NULL, false, "labels"},
	{"opts.verbose", CFG_BOOL, TOFF(verbose), "no", 0, 0, NULL, true, "chatty"},
	{"opts.count", CFG_INT, TOFF(count), "5", 1, 100, NULL, true, "how many"},
	{"opts.offset", CFG_INT, TOFF(offset), "-3", -10, 10, NULL, true, "signed"},
	{"limits.size", CFG_SIZE, TOFF(size), "64K", 1, 4 * GIB_D, NULL, true, "bytes"},
	{"limits.timeout", CFG_DURATION, TOFF(timeout), "30s", 0, 86400, NULL, true, "seconds"},
	{"colour", CFG_ENUM, TOFF(colour), "green", 0, 0, colours, false, "paint"},
	{"a.b.c", CFG_STRING, TOFF(deep), "", 0, 0, NULL, false, "deep"},
	{"opts.late", CFG_BOOL, TOFF(late), "true", 0, 0, NULL, false, "declared late"},
	{NULL, 0, 0, NULL, 0, 0, NULL, false, NULL},
};

/* Fresh struct at its defaults; the test frees it with cfg_free. */
static void tinit(struct tconf *c)
{
	struct cfg_error err;

	memset(c, 0, sizeof(*c));
	CU_ASSERT_EQUAL_FATAL(cfg_init_defaults(tkeys, c, &err), 0);
}

static int tload(struct tconf *c, const char *yaml, struct cfg_error *err)
{
	return cfg_load_string(tkeys, c, yaml, strlen(yaml), "t.yaml", err);
}

static size_t list_len(char **list)
{
	size_t n = 0;

	while (list && list[n])
		n++;
	return n;
}

/* ---- generic comparison over a table ------------------------------------- */

/* Name of the first key that differs, or "" (so a failing assert shows which). */
static const char *first_difference(const struct cfg_key *table, const void *a, const void *b)
{
	for (const struct cfg_key *k = table; k->name; k++)
		if (!cfg_value_equal(k, a, b, false))
			return k->name;
	return "";
}

/*
 * Load yaml into a fresh tconf and expect failure at line:column with exactly
 * msg. Prints the actual error when it differs, to make table failures readable.
 */
static void expect_error(const char *yaml, int line, int column, const char *msg)
{
	struct tconf c;
	struct cfg_error err;
	int rc;

	tinit(&c);
	rc = tload(&c, yaml, &err);
	CU_ASSERT_EQUAL(rc, -1);
	CU_ASSERT_STRING_EQUAL(err.file, "t.yaml");
	CU_ASSERT_EQUAL(err.line, line);
	CU_ASSERT_EQUAL(err.column, column);
	CU_ASSERT_STRING_EQUAL(err.message, msg);
	if (rc != -1 || err.line != line || err.column != column || strcmp(err.message, msg) != 0)
		fprintf(stderr, "\n  yaml %.40s: got rc=%d %d:%d '%s'\n", yaml, rc, err.line,
		        err.column, err.message);
	cfg_free(tkeys, &c);
}

/* Apply key=value with cfg_set on a fresh tconf; on success copy the field out through *c. */
static int tset(struct tconf *c, const char *key, const char *value, struct cfg_error *err)
{
	tinit(c);
	return cfg_set(tkeys, c, key, value, err);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_defaults(void)
{
	struct tconf c;

	tinit(&c);
	CU_ASSERT_STRING_EQUAL(c.name, "anon");
	CU_ASSERT_EQUAL_FATAL(list_len(c.tags), 2);
	CU_ASSERT_STRING_EQUAL(c.tags[0], "x");
	CU_ASSERT_STRING_EQUAL(c.tags[1], "y");
	CU_ASSERT_FALSE(c.verbose);
	CU_ASSERT_EQUAL(c.count, 5);
	CU_ASSERT_EQUAL(c.offset, -3);
	CU_ASSERT_EQUAL(c.size, 65536);
	CU_ASSERT_DOUBLE_EQUAL(c.timeout, 30.0, 0);
	CU_ASSERT_EQUAL(c.colour, GREEN);
	CU_ASSERT_STRING_EQUAL(c.deep, "");
	CU_ASSERT_TRUE(c.late);
	cfg_free(tkeys, &c);
	CU_ASSERT_PTR_NULL(c.name);
	CU_ASSERT_PTR_NULL(c.tags);
	CU_ASSERT_PTR_NULL(c.deep);
	/* Freeing twice is harmless: cfg_free zeroes what it frees. */
	cfg_free(tkeys, &c);
}

static void test_bad_default(void)
{
	static const struct cfg_key bad[] = {
		{"ok", CFG_STRING, TOFF(name), "fine", 0, 0, NULL, false, "x"},
		{"opts.count", CFG_INT, TOFF(count), "500", 1, 100, NULL, false, "x"},
		{NULL, 0, 0, NULL, 0, 0, NULL, false, NULL},
	};
	struct tconf c;
	struct cfg_error err;

	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(cfg_init_defaults(bad, &c, &err), -1);
	CU_ASSERT_STRING_EQUAL(err.file, "defaults");
	CU_ASSERT_EQUAL(err.line, 0);
	CU_ASSERT_STRING_EQUAL(err.message, "opts.count: bad default: must be between 1 and 100");
	cfg_free(bad, &c);
}

static void test_load_every_type(void)
{
	static const char yaml[] =
		"# a comment\n"
		"name: \"Ada Lovelace\"\n"
		"tags:\n"
		"  - one\n"
		"  - 'two, three'\n"
		"opts:\n"
		"  verbose: yes\n"
		"  count: 42\n"
		"  offset: -10\n"
		"  late: off\n"
		"limits:\n"
		"  size: 2M\n"
		"  timeout: 250ms\n"
		"colour: BLUE\n"
		"a:\n"
		"  b:\n"
		"    c: deep value\n";
	struct tconf c;
	struct cfg_error err;

	tinit(&c);
	CU_ASSERT_EQUAL_FATAL(tload(&c, yaml, &err), 0);
	CU_ASSERT_STRING_EQUAL(c.name, "Ada Lovelace");
	CU_ASSERT_EQUAL_FATAL(list_len(c.tags), 2);
	CU_ASSERT_STRING_EQUAL(c.tags[0], "one");
	CU_ASSERT_STRING_EQUAL(c.tags[1], "two, three"); /* YAML items are never split */
	CU_ASSERT_TRUE(c.verbose);
	CU_ASSERT_EQUAL(c.count, 42);
	CU_ASSERT_EQUAL(c.offset, -10);
	CU_ASSERT_FALSE(c.late);
	CU_ASSERT_EQUAL(c.size, 2 * 1024 * 1024);
	CU_ASSERT_DOUBLE_EQUAL(c.timeout, 0.25, 0);
	CU_ASSERT_EQUAL(c.colour, BLUE);
	CU_ASSERT_STRING_EQUAL(c.deep, "deep value");
	cfg_free(tkeys, &c);
}

static void test_flow_and_dotted(void)
{
	struct tconf c;
	struct cfg_error err;

	tinit(&c);
	CU_ASSERT_EQUAL_FATAL(tload(&c, "opts: {verbose: on, count: 7}\n"
	                                 "limits.size: 1G\n"
	                                 "a.b: {c: x}\n"
	                                 "tags: [p, q, r]\n", &err), 0);
	CU_ASSERT_TRUE(c.verbose);
	CU_ASSERT_EQUAL(c.count, 7);
	CU_ASSERT_EQUAL(c.size, (size_t)1 << 30);
	CU_ASSERT_STRING_EQUAL(c.deep, "x");
	CU_ASSERT_EQUAL(list_len(c.tags), 3);
	cfg_free(tkeys, &c);
}

/* Keys the file does not mention keep their values; strings replaced twice do not leak. */
static void test_partial_and_repeated_load(void)
{
	struct tconf c;
	struct cfg_error err;

	tinit(&c);
	CU_ASSERT_EQUAL(tload(&c, "name: first\ntags: [a]\n", &err), 0);
	CU_ASSERT_EQUAL(tload(&c, "name: second\ntags: [b, c]\n", &err), 0);
	CU_ASSERT_STRING_EQUAL(c.name, "second");
	CU_ASSERT_EQUAL_FATAL(list_len(c.tags), 2);
	CU_ASSERT_STRING_EQUAL(c.tags[0], "b");
	CU_ASSERT_EQUAL(c.count, 5);
	CU_ASSERT_EQUAL(c.colour, GREEN);
	cfg_free(tkeys, &c);
}

static void test_empty_documents(void)
{
	static const char *const empties[] = {
		"", "\n", "# only a comment\n", "---\n", "--- # nothing\n...\n", "~\n",
		"opts:\n", "opts: ~\nlimits:\n  # all commented out\n",
	};
	struct tconf c, d;
	struct cfg_error err;

	tinit(&d);
	for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
		tinit(&c);
		CU_ASSERT_EQUAL(tload(&c, empties[i], &err), 0);
		CU_ASSERT_STRING_EQUAL(first_difference(tkeys, &c, &d), "");
		cfg_free(tkeys, &c);
	}
	cfg_free(tkeys, &d);
}

static void test_bool_values(void)
{
	static const struct {
		const char *in;
		bool        out;
	} good[] = {
		{"true", true}, {"yes", true}, {"on", true}, {"TRUE", true}, {"Yes", true},
		{"false", false}, {"no", false}, {"off", false}, {"Off", false}, {"NO", false},
	};
	static const char *const bad[] = {"maybe", "1", "0", "", "t", "truee"};
	struct tconf c;
	struct cfg_error err;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CU_ASSERT_EQUAL(tset(&c, "opts.verbose", good[i].in, &err), 0);
		CU_ASSERT_EQUAL(c.verbose, good[i].out);
		cfg_free(tkeys, &c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(tset(&c, "opts.verbose", bad[i], &err), -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "expected a boolean (true/false)"));
		cfg_free(tkeys, &c);
	}
	tset(&c, "opts.verbose", "maybe", &err);
	CU_ASSERT_STRING_EQUAL(err.message, "opts.verbose: expected a boolean (true/false), got 'maybe'");
	cfg_free(tkeys, &c);
}

static void test_int_values(void)
{
	static const struct {
		const char *key, *in;
		long long   out;
	} good[] = {
		{"opts.count", "42", 42}, {"opts.count", "1", 1}, {"opts.count", "100", 100},
		{"opts.count", "+7", 7}, {"opts.offset", "-10", -10}, {"opts.offset", "0", 0},
	};
	static const struct {
		const char *key, *in, *msg;
	} bad[] = {
		{"opts.count", "4x", "opts.count: expected an integer, got '4x'"},
		{"opts.count", "", "opts.count: expected an integer, got ''"},
		{"opts.count", " 5", "opts.count: expected an integer, got ' 5'"},
		{"opts.count", "1.0", "opts.count: expected an integer, got '1.0'"},
		{"opts.count", "0x10", "opts.count: expected an integer, got '0x10'"},
		{"opts.count", "0", "opts.count: must be between 1 and 100"},
		{"opts.count", "101", "opts.count: must be between 1 and 100"},
		{"opts.count", "99999999999999999999", "opts.count: must be between 1 and 100"},
		{"opts.offset", "-11", "opts.offset: must be between -10 and 10"},
	};
	struct tconf c;
	struct cfg_error err;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CU_ASSERT_EQUAL(tset(&c, good[i].key, good[i].in, &err), 0);
		CU_ASSERT_EQUAL(strcmp(good[i].key, "opts.count") == 0 ? c.count : c.offset, good[i].out);
		cfg_free(tkeys, &c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(tset(&c, bad[i].key, bad[i].in, &err), -1);
		CU_ASSERT_STRING_EQUAL(err.message, bad[i].msg);
		CU_ASSERT_EQUAL(c.count, 5); /* a bad value never reaches the field */
		cfg_free(tkeys, &c);
	}
}

static void test_size_values(void)
{
	static const struct {
		const char *in;
		size_t      out;
	} good[] = {
		{"1", 1}, {"65536", 65536}, {"64K", 65536}, {"64k", 65536}, {"64KiB", 65536},
		{"64kib", 65536}, {"64 K", 65536}, {"1M", 1 << 20}, {"1m", 1 << 20},
		{"1MiB", 1 << 20}, {"3G", (size_t)3 << 30}, {"1g", (size_t)1 << 30},
		{"1GiB", (size_t)1 << 30}, {"4G", (size_t)4 << 30}, {"4096M", (size_t)4 << 30},
	};
	static const char *const syntax[] = {
		"64X", "K", "-1", "1.5M", "", "0x10", "64KB", "64Ki", "64 KiB B", " 64", "64K ",
	};
	static const char *const bounds[] = {
		"0", "5G", "4294967297", "99999999999999999999999", "18014398509481984G",
	};
	struct tconf c;
	struct cfg_error err;
	char want[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CU_ASSERT_EQUAL(tset(&c, "limits.size", good[i].in, &err), 0);
		CU_ASSERT_EQUAL(c.size, good[i].out);
		cfg_free(tkeys, &c);
	}
	for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++) {
		CU_ASSERT_EQUAL(tset(&c, "limits.size", syntax[i], &err), -1);
		snprintf(want, sizeof(want),
		         "limits.size: expected a size (bytes, or a number with a K, M or G suffix), got '%s'",
		         syntax[i]);
		CU_ASSERT_STRING_EQUAL(err.message, want);
		cfg_free(tkeys, &c);
	}
	for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
		CU_ASSERT_EQUAL(tset(&c, "limits.size", bounds[i], &err), -1);
		CU_ASSERT_STRING_EQUAL(err.message, "limits.size: must be between 1 and 4294967296");
		cfg_free(tkeys, &c);
	}
}

static void test_duration_values(void)
{
	static const struct {
		const char *in;
		double      out;
	} good[] = {
		{"30", 30}, {"0", 0}, {"1.5", 1.5}, {"0.1", 0.1}, {"250ms", 0.25}, {"1ms", 0.001},
		{"2s", 2}, {"10 s", 10}, {"5m", 300}, {"1h", 3600}, {"0.5h", 1800}, {"24h", 86400},
	};
	static const char *const syntax[] = {
		"5 minutes", "1d", "-1", "abc", ".5", "1.", "ms", "1e3", "inf", "nan", "", "1.5.2",
		"5M", "0x10",
	};
	struct tconf c;
	struct cfg_error err;
	char want[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CU_ASSERT_EQUAL(tset(&c, "limits.timeout", good[i].in, &err), 0);
		CU_ASSERT_DOUBLE_EQUAL(c.timeout, good[i].out, 1e-12);
		cfg_free(tkeys, &c);
	}
	for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++) {
		CU_ASSERT_EQUAL(tset(&c, "limits.timeout", syntax[i], &err), -1);
		snprintf(want, sizeof(want),
		         "limits.timeout: expected a duration (seconds, or a number with a ms, s, m or h suffix), got '%s'",
		         syntax[i]);
		CU_ASSERT_STRING_EQUAL(err.message, want);
		cfg_free(tkeys, &c);
	}
	CU_ASSERT_EQUAL(tset(&c, "limits.timeout", "25h", &err), -1);
	CU_ASSERT_STRING_EQUAL(err.message, "limits.timeout: must be between 0s and 24h");
	cfg_free(tkeys, &c);
	/* Absurdly many digits become infinity, which is out of bounds, not a crash. */
	memset(want, '9', 400 < sizeof(want) ? 400 : sizeof(want) - 1);
	want[sizeof(want) - 1] = '\0';
	CU_ASSERT_EQUAL(tset(&c, "limits.timeout", want, &err), -1);
	CU_ASSERT_STRING_EQUAL(err.message, "limits.timeout: must be between 0s and 24h");
	cfg_free(tkeys, &c);
}

static void test_enum_values(void)
{
	struct tconf c;
	struct cfg_error err;

	CU_ASSERT_EQUAL(tset(&c, "colour", "red", &err), 0);
	CU_ASSERT_EQUAL(c.colour, RED);
	cfg_free(tkeys, &c);
	CU_ASSERT_EQUAL(tset(&c, "colour", "BLUE", &err), 0);
	CU_ASSERT_EQUAL(c.colour, BLUE);
	cfg_free(tkeys, &c);
	CU_ASSERT_EQUAL(tset(&c, "colour", "purple", &err), -1);
	CU_ASSERT_STRING_EQUAL(err.message, "colour: expected one of: red, green, blue, got 'purple'");
	CU_ASSERT_EQUAL(c.colour, GREEN);
	cfg_free(tkeys, &c);
}

static void test_string_values(void)
{
	static const struct {
		const char *yaml, *out;
	} cases[] = {
		{"name: plain words here\n", "plain words here"},
		{"name: \"tab\\there \\\"q\\\"\"\n", "tab\there \"q\""},
		{"name: 'single ''quoted'''\n", "single 'quoted'"},
		{"name:\n", ""},
		{"name: ~\n", ""},
		{"name: null\n", ""},
		{"name: \"~\"\n", "~"},
		{"name: ''\n", ""},
		{"name: 123\n", "123"},
		{"name: yes\n", "yes"},
		{"name: |\n  line one\n  line two\n", "line one\nline two\n"},
		{"name: caf\xc3\xa9\n", "caf\xc3\xa9"},
		{"name: a # trailing comment\n", "a"},
	};
	struct tconf c;
	struct cfg_error err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tinit(&c);
		CU_ASSERT_EQUAL(tload(&c, cases[i].yaml, &err), 0);
		CU_ASSERT_STRING_EQUAL(c.name, cases[i].out);
		cfg_free(tkeys, &c);
	}
}

static void test_strlist_values(void)
{
	struct tconf c;
	struct cfg_error err;

	/* A single scalar is a one-item list, commas and all. */
	tinit(&c);
	CU_ASSERT_EQUAL(tload(&c, "tags: a, b\n", &err), 0);
	CU_ASSERT_EQUAL_FATAL(list_len(c.tags), 1);
	CU_ASSERT_STRING_EQUAL(c.tags[0], "a, b");
	cfg_free(tkeys, &c);

	static const char *const none[] = {"tags: []\n", "tags: \"\"\n", "tags: ~\n", "tags:\n"};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		tinit(&c);
		CU_ASSERT_EQUAL(tload(&c, none[i], &err), 0);
		CU_ASSERT_PTR_NOT_NULL(c.tags);
		CU_ASSERT_EQUAL(list_len(c.tags), 0);
		cfg_free(tkeys, &c);
	}

	/* From the command line a list is comma-separated, blanks trimmed. */
	CU_ASSERT_EQUAL(tset(&c, "tags", " a, b ,c", &err), 0);
	CU_ASSERT_EQUAL_FATAL(list_len(c.tags), 3);
	CU_ASSERT_STRING_EQUAL(c.tags[0], "a");
	CU_ASSERT_STRING_EQUAL(c.tags[1], "b");
	CU_ASSERT_STRING_EQUAL(c.tags[2], "c");
	cfg_free(tkeys, &c);
	CU_ASSERT_EQUAL(tset(&c, "tags", "[::1]:143", &err), 0);
	CU_ASSERT_EQUAL_FATAL(list_len(c.tags), 1);
	CU_ASSERT_STRING_EQUAL(c.tags[0], "[::1]:143");
	cfg_free(tkeys, &c);
	CU_ASSERT_EQUAL(tset(&c, "tags", "", &err), 0);
	CU_ASSERT_EQUAL(list_len(c.tags), 0);
	cfg_free(tkeys, &c);
	CU_ASSERT_EQUAL(tset(&c, "tags", "a,,b", &err), -1);
	CU_ASSERT_STRING_EQUAL(err.message, "tags: empty item in list");
	CU_ASSERT_EQUAL(list_len(c.tags), 2); /* untouched */
	cfg_free(tkeys, &c);
	CU_ASSERT_EQUAL(tset(&c, "tags", "a,", &err), -1);
	cfg_free(tkeys, &c);
}

/* Every loader error, with the exact position of the offending node. */
static void test_error_positions(void)
{
	static const struct {
		const char *yaml;
		int         line, column;
		const char *msg;
	} cases[] = {
		{"name: x\nbogus: 1\n", 2, 1, "unknown key 'bogus'"},
		{"limits:\n  size: 1K\n  foo: 2\n", 3, 3, "unknown key 'limits.foo'"},
		{"limit:\n  size: 1\n", 1, 1, "unknown key 'limit'"},
		{"limits.foo: 1\n", 1, 1, "unknown key 'limits.foo'"},
		{"a:\n  b:\n    d: 1\n", 3, 5, "unknown key 'a.b.d'"},
		{"opts:\n  verbose: maybe\n", 2, 12,
		 "opts.verbose: expected a boolean (true/false), got 'maybe'"},
		{"limits:\n  size: 12Q\n", 2, 9,
		 "limits.size: expected a size (bytes, or a number with a K, M or G suffix), got '12Q'"},
		{"limits:\n  timeout: soon\n", 2, 12,
		 "limits.timeout: expected a duration (seconds, or a number with a ms, s, m or h suffix), got 'soon'"},
		{"opts:\n  count: 101\n", 2, 10, "opts.count: must be between 1 and 100"},
		{"limits: {size: 0}\n", 1, 16, "limits.size: must be between 1 and 4294967296"},
		{"colour: \"mauve\"\n", 1, 9, "colour: expected one of: red, green, blue, got 'mauve'"},
		{"name:\n  first: a\n", 2, 3, "name: expected a string, got a mapping"},
		{"opts: {verbose: {x: 1}}\n", 1, 17,
		 "opts.verbose: expected a boolean (true/false), got a mapping"},
		{"opts:\n  count: [1, 2]\n", 2, 10, "opts.count: expected an integer, got a sequence"},
		{"tags: {a: 1}\n", 1, 7, "tags: expected a list of strings, got a mapping"},
		{"opts: 5\n", 1, 7, "opts: expected a mapping of settings, got a scalar"},
		{"opts:\n  - count\n", 2, 3, "opts: expected a mapping of settings, got a sequence"},
		{"opts:\n  count: 1\n  count: 2\n", 3, 3, "duplicate key 'opts.count' (first set at line 2)"},
		{"opts.count: 1\nopts:\n  count: 2\n", 3, 3,
		 "duplicate key 'opts.count' (first set at line 1)"},
		{"opts: {}\nopts: {}\n", 2, 1, "duplicate key 'opts' (first set at line 1)"},
		{"name: a\nname: b\n", 2, 1, "duplicate key 'name' (first set at line 1)"},
		{"- a\n- b\n", 1, 1, "the top level must be a mapping of settings, got a sequence"},
		{"just text\n", 1, 1, "the top level must be a mapping of settings, got a scalar"},
		{"? [a]\n: 1\n", 1, 3, "keys must be plain names, got a sequence"},
		{"tags:\n  - ok\n  - {a: 1}\n", 3, 5, "tags: expected a string list item, got a mapping"},
		{"tags: [a, '']\n", 1, 11, "tags: empty item in list"},
		{"name: \"a\\0b\"\n", 1, 7, "name: NUL bytes are not allowed"},
		{"name: a\n---\nname: b\n", 3, 1, "only one YAML document is allowed"},
		/* YAML syntax errors: libyaml's problem_mark, its context in parentheses. */
		{"opts:\n  count: 1\n verbose: true\n", 3, 2,
		 "YAML syntax error: did not find expected key (while parsing a block mapping at line 1, column 1)"},
		{"opts:\n\tcount: 1\n", 2, 1,
		 "YAML syntax error: found character that cannot start any token (while scanning for the next token at line 2, column 1)"},
		{"name: \"abc\n", 2, 1,
		 "YAML syntax error: found unexpected end of stream (while scanning a quoted scalar at line 1, column 7)"},
		{"a: b: c\n", 1, 5, "YAML syntax error: mapping values are not allowed in this context"},
		{"tags: [a, b\n", 2, 1,
		 "YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence at line 1, column 7)"},
		{"name: *nope\n", 1, 7, "YAML syntax error: found undefined alias"},
		{"name: x\nname2: \"\xc3\x28\"\n", 2, 10,
		 "YAML syntax error: invalid trailing UTF-8 octet (byte 0x28)"},
		/* A valid document after an invalid second one is still an error. */
		{"name: a\n---\n[\n", 4, 1,
		 "YAML syntax error: did not find expected node content (while parsing a flow node at line 4, column 1)"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_error(cases[i].yaml, cases[i].line, cases[i].column, cases[i].msg);
}

/* A table deeper than the walker allows still fails cleanly, not by recursion. */
static void test_nesting_limit(void)
{
	static const struct cfg_key deep[] = {
		{"a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.x", CFG_STRING, TOFF(name), "", 0, 0, NULL,
		 false, "too deep"},
		{NULL, 0, 0, NULL, 0, 0, NULL, false, NULL},
	};
	char yaml[1024];
	size_t n = 0;
	struct tconf c;
	struct cfg_error err;

	for (int d = 0; d < 20; d++)
		n += (size_t)snprintf(yaml + n, sizeof(yaml) - n, "%*sa:\n", d * 2, "");
	n += (size_t)snprintf(yaml + n, sizeof(yaml) - n, "%*sx: 1\n", 40, "");
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL_FATAL(cfg_init_defaults(deep, &c, &err), 0);
	CU_ASSERT_EQUAL(cfg_load_string(deep, &c, yaml, n, "deep.yaml", &err), -1);
	CU_ASSERT_STRING_EQUAL(err.message, "mappings nested too deeply");
	CU_ASSERT_EQUAL(err.line, 18);
	cfg_free(deep, &c);
}

static void test_load_file(void)
{
	char path[] = "/tmp/pimap-test-cfg-XXXXXX";
	struct tconf c;
	struct cfg_error err;
	char buf[512];
	FILE *f;
	int fd;

	fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	f = fdopen(fd, "w");
	CU_ASSERT_FATAL(f != NULL);
	fputs("opts:\n  count: 9\n  bogus: 1\n", f);
	fclose(f);

	tinit(&c);
	CU_ASSERT_EQUAL(cfg_load_file(tkeys, &c, path, &err), -1);
	CU_ASSERT_STRING_EQUAL(err.file, path);
	CU_ASSERT_EQUAL(err.line, 3);
	CU_ASSERT_EQUAL(err.column, 3);
	CU_ASSERT_STRING_EQUAL(err.message, "unknown key 'opts.bogus'");
	cfg_free(tkeys, &c);

	/* Empty file: every default stays. */
	f = fopen(path, "w");
	CU_ASSERT_FATAL(f != NULL);
	fclose(f);
	tinit(&c);
	CU_ASSERT_EQUAL(cfg_load_file(tkeys, &c, path, &err), 0);
	CU_ASSERT_EQUAL(c.count, 5);
	cfg_free(tkeys, &c);

	/* Too big to be a config file. */
	f = fopen(path, "w");
	CU_ASSERT_FATAL(f != NULL);
	for (int i = 0; i < 1100; i++) {
		memset(buf, '#', sizeof(buf) - 1);
		buf[sizeof(buf) - 1] = '\n';
		fwrite(buf, 1, sizeof(buf), f);
		fwrite(buf, 1, sizeof(buf), f);
	}
	fclose(f);
	tinit(&c);
	CU_ASSERT_EQUAL(cfg_load_file(tkeys, &c, path, &err), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "file is larger than"));
	cfg_free(tkeys, &c);
	unlink(path);

	/* Unreadable: strerror, no position. */
	tinit(&c);
	CU_ASSERT_EQUAL(cfg_load_file(tkeys, &c, path, &err), -1);
	CU_ASSERT_STRING_EQUAL(err.file, path);
	CU_ASSERT_EQUAL(err.line, 0);
	snprintf(buf, sizeof(buf), "cannot open: %s", strerror(ENOENT));
	CU_ASSERT_STRING_EQUAL(err.message, buf);
	cfg_format_error(&err, buf, sizeof(buf));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, ": cannot open: "));
	CU_ASSERT_EQUAL(cfg_load_file(tkeys, &c, "/", &err), -1);
	snprintf(buf, sizeof(buf), "cannot read: %s", strerror(EISDIR));
	CU_ASSERT_STRING_EQUAL(err.message, buf);
	cfg_free(tkeys, &c);
}

static void test_set(void)
{
	struct tconf c;
	struct cfg_error err;

	CU_ASSERT_EQUAL(tset(&c, "opts.count", "42", &err), 0);
	CU_ASSERT_EQUAL(c.count, 42);
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "name", "bob", &err), 0);
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "name", "  spaced, kept ", &err), 0);
	CU_ASSERT_STRING_EQUAL(c.name, "  spaced, kept ");
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "a.b.c", "deep", &err), 0);
	CU_ASSERT_STRING_EQUAL(c.deep, "deep");

	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "nope", "1", &err), -1);
	CU_ASSERT_STRING_EQUAL(err.file, "command line");
	CU_ASSERT_EQUAL(err.line, 0);
	CU_ASSERT_EQUAL(err.column, 0);
	CU_ASSERT_STRING_EQUAL(err.message, "unknown key 'nope'");
	/* A section is not a key. */
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "opts", "1", &err), -1);
	CU_ASSERT_STRING_EQUAL(err.message, "unknown key 'opts'");
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "opts.count", "x", &err), -1);
	CU_ASSERT_STRING_EQUAL(err.message, "opts.count: expected an integer, got 'x'");
	CU_ASSERT_EQUAL(c.count, 42);
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "opts.count", NULL, &err), -1);
	CU_ASSERT_STRING_EQUAL(err.message, "opts.count: missing value");
	/* err is optional. */
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "opts.count", "x", NULL), -1);
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "opts.count", "7", NULL), 0);
	CU_ASSERT_EQUAL(c.count, 7);

	CU_ASSERT_PTR_EQUAL(cfg_find(tkeys, "limits.size"), &tkeys[5]);
	CU_ASSERT_PTR_NULL(cfg_find(tkeys, "limits"));
	CU_ASSERT_PTR_NULL(cfg_find(tkeys, "limits.siz"));
	cfg_free(tkeys, &c);
}

static void test_format_error(void)
{
	struct cfg_error err = {.file = "f.yaml", .line = 3, .column = 7, .message = "boom"};
	char buf[64];

	cfg_format_error(&err, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "f.yaml:3:7: boom");
	err.column = 0;
	cfg_format_error(&err, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "f.yaml:3: boom");
	err.line = 0;
	cfg_format_error(&err, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "f.yaml: boom");
	cfg_format_error(&err, buf, 5);
	CU_ASSERT_STRING_EQUAL(buf, "f.ya");
	buf[0] = 'X';
	cfg_format_error(&err, buf, 0);
	CU_ASSERT_EQUAL(buf[0], 'X');
}

/* Dump text, malloc'd; the caller frees. */
static char *dump_to_string(const struct cfg_key *table, const void *config, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);

	if (!f)
		return NULL;
	cfg_dump(table, config, f);
	fclose(f);
	return text;
}

static void test_dump_roundtrip(void)
{
	static const char awkward[] =
		"name: \"He said \\\"hi\\\" \\\\ back\\n\\ttab: # not a comment \\x01 caf\xc3\xa9 \"\n"
		"tags: [\"a,b\", \"  spaced \", \"#x\", \"- dash\", \"yes\", \"~\", \"{ }\", \"'\"]\n"
		"opts: {verbose: true, count: 99, offset: -7, late: false}\n"
		"limits: {size: 1000, timeout: 0.1}\n"
		"colour: blue\n"
		"a.b.c: \"null\"\n";
	static const char *const sizes[] = {"1000", "3M", "65537", "4G", "1"};
	static const char *const durations[] = {"0.1", "1.5", "31m", "250ms", "0", "7201", "0.001", "1h"};
	struct tconf c, d;
	struct cfg_error err;
	char *text;
	size_t len;

	tinit(&c);
	CU_ASSERT_EQUAL_FATAL(tload(&c, awkward, &err), 0);
	text = dump_to_string(tkeys, &c, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	tinit(&d);
	CU_ASSERT_EQUAL(cfg_load_string(tkeys, &d, text, len, "dump", &err), 0);
	CU_ASSERT_STRING_EQUAL(first_difference(tkeys, &c, &d), "");
	if (err.line)
		fprintf(stderr, "\n%s\nreload: %d:%d %s\n", text, err.line, err.column, err.message);

	/* Help as comments, nesting, and "opts" written once although opts.late comes later. */
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "# who\nname: \"He said"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "opts:\n  # chatty\n  verbose: true\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  # declared late\n  late: false\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "a:\n  b:\n    # deep\n    c: \"null\"\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "limits:\n  # bytes\n  size: 1000\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "colour: blue\n"));
	CU_ASSERT_PTR_NULL(strstr(strstr(text, "opts:") + 1, "opts:"));
	free(text);
	cfg_free(tkeys, &d);

	/* Empty list and empty strings survive too. */
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "tags", "", &err), 0);
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "name", "", &err), 0);
	text = dump_to_string(tkeys, &c, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "tags: []\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "name: \"\"\n"));
	tinit(&d);
	CU_ASSERT_EQUAL(cfg_load_string(tkeys, &d, text, len, "dump", &err), 0);
	CU_ASSERT_STRING_EQUAL(first_difference(tkeys, &c, &d), "");
	free(text);
	cfg_free(tkeys, &d);

	/* Sizes and durations are written in units only when exact. */
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (size_t j = 0; j < sizeof(durations) / sizeof(durations[0]); j++) {
			CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "limits.size", sizes[i], &err), 0);
			CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "limits.timeout", durations[j], &err), 0);
			text = dump_to_string(tkeys, &c, &len);
			CU_ASSERT_PTR_NOT_NULL_FATAL(text);
			tinit(&d);
			CU_ASSERT_EQUAL(cfg_load_string(tkeys, &d, text, len, "dump", &err), 0);
			CU_ASSERT_STRING_EQUAL(first_difference(tkeys, &c, &d), "");
			free(text);
			cfg_free(tkeys, &d);
		}
	}
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "limits.size", "3M", &err), 0);
	CU_ASSERT_EQUAL(cfg_set(tkeys, &c, "limits.timeout", "7201", &err), 0);
	text = dump_to_string(tkeys, &c, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "size: 3M\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "timeout: 7201s\n"));
	free(text);
	cfg_free(tkeys, &c);
}

/* ---- pimap-proxy's table ---------------------------------------------------- */

static void test_proxy_defaults(void)
{
	struct proxy_config c, d;
	struct cfg_error err;
	char *text;
	size_t len;

	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL_FATAL(cfg_init_defaults(proxy_config_keys, &c, &err), 0);
	CU_ASSERT_EQUAL_FATAL(list_len(c.listen_imap), 1);
	CU_ASSERT_STRING_EQUAL(c.listen_imap[0], "127.0.0.1:1143");
	CU_ASSERT_EQUAL_FATAL(list_len(c.listen_imaps), 1);
	CU_ASSERT_STRING_EQUAL(c.listen_imaps[0], "127.0.0.1:1993");
	CU_ASSERT_STRING_EQUAL(c.upstream_url, "");
	CU_ASSERT_STRING_EQUAL(c.upstream_ca_file, "");
	CU_ASSERT_STRING_EQUAL(c.upstream_server_name, "");
	CU_ASSERT_FALSE(c.upstream_allow_plaintext);
	CU_ASSERT_TRUE(c.upstream_compress);
	CU_ASSERT_DOUBLE_EQUAL(c.upstream_connect_timeout, 15, 0);
	CU_ASSERT_STRING_EQUAL(c.tls_cert_file, "");
	CU_ASSERT_STRING_EQUAL(c.tls_key_file, "");
	CU_ASSERT_STRING_EQUAL(c.state_dir, "");
	CU_ASSERT_EQUAL(c.log_level, LOGV_INFO);
	CU_ASSERT_STRING_EQUAL(c.log_file, "");
	CU_ASSERT_FALSE(c.log_trace);
	CU_ASSERT_STRING_EQUAL(c.pid_file, "");
	CU_ASSERT_EQUAL(c.max_line_length, 64 * 1024);
	CU_ASSERT_EQUAL(c.max_literal_size, 64 * 1024 * 1024);
	CU_ASSERT_EQUAL(c.max_list_depth, 32);
	CU_ASSERT_EQUAL(c.max_output_queue, 1024 * 1024);
	CU_ASSERT_EQUAL(c.max_clients, 256);
	CU_ASSERT_DOUBLE_EQUAL(c.preauth_timeout, 60, 0);
	CU_ASSERT_DOUBLE_EQUAL(c.idle_timeout, 31 * 60, 0);
	CU_ASSERT_DOUBLE_EQUAL(c.drain_timeout, 10, 0);

	text = dump_to_string(proxy_config_keys, &c, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	memset(&d, 0, sizeof(d));
	CU_ASSERT_EQUAL(cfg_init_defaults(proxy_config_keys, &d, &err), 0);
	CU_ASSERT_EQUAL(cfg_set(proxy_config_keys, &d, "log.level", "error", &err), 0);
	CU_ASSERT_EQUAL(cfg_load_string(proxy_config_keys, &d, text, len, "dump", &err), 0);
	CU_ASSERT_STRING_EQUAL(first_difference(proxy_config_keys, &c, &d), "");
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "limits:\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  max_line_length: 64K\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  imap:\n    - \"127.0.0.1:1143\"\n"));
	free(text);
	cfg_free(proxy_config_keys, &c);
	cfg_free(proxy_config_keys, &d);
}

/*
 * What every key table must be: help text on one line, unique names, one key
 * per field, exactly the keys in fixed[] restart-only, and the reloadable ones
 * among log.*, limits.* and also_reloadable (NULL-terminated).
 */
static void check_key_table(const struct cfg_key *keys, const char *const *fixed, size_t nfixed_want,
                            const char *const *also_reloadable, size_t nkeys_want)
{
	size_t n = 0, nfixed = 0;
	for (const struct cfg_key *k = keys; k->name; k++, n++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(k->help);
		CU_ASSERT(k->help[0] != '\0');
		CU_ASSERT_PTR_NULL(strchr(k->help, '\n'));
		CU_ASSERT_PTR_EQUAL(cfg_find(keys, k->name), k); /* names unique */
		for (const struct cfg_key *j = keys; j < k; j++)
			CU_ASSERT(j->offset != k->offset); /* one key per field */
		bool is_fixed = false;
		for (size_t i = 0; i < nfixed_want; i++)
			if (strcmp(fixed[i], k->name) == 0)
				is_fixed = true;
		nfixed += is_fixed;
		CU_ASSERT_EQUAL(k->reloadable, !is_fixed);
		if (k->reloadable != !is_fixed)
			fprintf(stderr, "\n  %s: reloadable is %d\n", k->name, k->reloadable);
		if (k->reloadable) {
			bool allowed = strncmp(k->name, "log.", 4) == 0 || strncmp(k->name, "limits.", 7) == 0;
			for (const char *const *a = also_reloadable; *a && !allowed; a++)
				allowed = strcmp(*a, k->name) == 0;
			CU_ASSERT(allowed);
		}
	}
	CU_ASSERT_EQUAL(n, nkeys_want);
	CU_ASSERT_EQUAL(nfixed, nfixed_want);
}

static void test_proxy_table(void)
{
	static const char *const fixed[] = {
		"listen.imap", "listen.imaps", "upstream.url", "upstream.ca_file",
		"upstream.server_name", "upstream.allow_plaintext", "upstream.compress",
		"upstream.connect_timeout", "tls.cert", "tls.key", "state_dir", "pid_file", "device_id",
		"upstream.binding", "upstream.mode", "outband.listen", "outband.address",
		"upstream.http_proxy", "upstream.http_proxy_user", "upstream.http_proxy_password_file",
		"smtp.listen", "smtp.listen_tls", "smtp.submission_url", "smtp.submission_ca_file",
		"smtp.submission_server_name", "smtp.submission_allow_plaintext",
		"status.socket",
	};
	static const char *const also_reloadable[] = {
		"listen.plaintext_login", /* a policy for new logins */
		/* the link's timing and the macros apply from the next use */
		"link.heartbeat", "link.dead_timeout", "link.reconnect_min", "link.reconnect_max", "link.outage_wait",
		"link.folder_status", "link.write_behind", "macros.enabled", "macros.dir", "upstream.poll_interval",
		"outband.max_age",
		/* sending: read for each new SMTP session, message or outbox try */
		"smtp.max_message_size", "smtp.max_recipients", "smtp.deliver_timeout", "smtp.retry_min",
		"smtp.retry_max", "smtp.outbox_max_age", "smtp.outbox_max_size", "smtp.save_sent",
		"smtp.submission_timeout", "filters.file", NULL,
	};
	const struct cfg_key *lvl;

	check_key_table(proxy_config_keys, fixed, sizeof(fixed) / sizeof(fixed[0]), also_reloadable,
	                64 /* every field of struct proxy_config */);

	lvl = cfg_find(proxy_config_keys, "log.level");
	CU_ASSERT_PTR_NOT_NULL_FATAL(lvl);
	CU_ASSERT_STRING_EQUAL(lvl->enum_values[LOGV_ERROR], "error");
	CU_ASSERT_STRING_EQUAL(lvl->enum_values[LOGV_WARN], "warn");
	CU_ASSERT_STRING_EQUAL(lvl->enum_values[LOGV_INFO], "info");
	CU_ASSERT_STRING_EQUAL(lvl->enum_values[LOGV_DEBUG], "debug");
	CU_ASSERT_PTR_NULL(lvl->enum_values[LOGV_DEBUG + 1]);
}

static void test_proxy_bounds(void)
{
	static const struct {
		const char *key, *value, *msg; /* msg NULL: accepted */
	} cases[] = {
		{"limits.max_line_length", "1023", "limits.max_line_length: must be between 1024 and 16777216"},
		{"limits.max_line_length", "1K", NULL},
		{"limits.max_line_length", "16M", NULL},
		{"limits.max_line_length", "16777217", "limits.max_line_length: must be between 1024 and 16777216"},
		{"limits.max_literal_size", "2G", NULL},
		{"limits.max_literal_size", "2049M", "limits.max_literal_size: must be between 1024 and 2147483648"},
		{"limits.max_list_depth", "0", "limits.max_list_depth: must be between 1 and 256"},
		{"limits.max_list_depth", "256", NULL},
		{"limits.max_output_queue", "16K", NULL},
		{"limits.max_output_queue", "257M", "limits.max_output_queue: must be between 16384 and 268435456"},
		{"limits.max_clients", "100000", NULL},
		{"limits.max_clients", "100001", "limits.max_clients: must be between 1 and 100000"},
		{"upstream.connect_timeout", "0.5", "upstream.connect_timeout: must be between 1s and 5m"},
		{"upstream.connect_timeout", "300", NULL},
		{"limits.preauth_timeout", "1h", NULL},
		{"limits.preauth_timeout", "3601", "limits.preauth_timeout: must be between 1s and 1h"},
		{"limits.idle_timeout", "59s", "limits.idle_timeout: must be between 1m and 24h"},
		{"limits.idle_timeout", "24h", NULL},
		{"limits.drain_timeout", "0", NULL},
		{"limits.drain_timeout", "10m", NULL},
		{"limits.drain_timeout", "601", "limits.drain_timeout: must be between 0s and 10m"},
		{"log.level", "DEBUG", NULL},
		{"log.level", "trace", "log.level: expected one of: error, warn, info, debug, got 'trace'"},
		{"listen.imap", "[::1]:1143, :2143", NULL},
	};
	struct proxy_config c;
	struct cfg_error err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&c, 0, sizeof(c));
		CU_ASSERT_EQUAL_FATAL(cfg_init_defaults(proxy_config_keys, &c, &err), 0);
		int rc = cfg_set(proxy_config_keys, &c, cases[i].key, cases[i].value, &err);
		CU_ASSERT_EQUAL(rc, cases[i].msg ? -1 : 0);
		if (cases[i].msg)
			CU_ASSERT_STRING_EQUAL(err.message, cases[i].msg);
		cfg_free(proxy_config_keys, &c);
	}
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL_FATAL(cfg_init_defaults(proxy_config_keys, &c, &err), 0);
	CU_ASSERT_EQUAL(cfg_set(proxy_config_keys, &c, "log.level", "debug", &err), 0);
	CU_ASSERT_EQUAL(c.log_level, LOGV_DEBUG);
	CU_ASSERT_EQUAL(cfg_set(proxy_config_keys, &c, "listen.imaps", "", &err), 0);
	CU_ASSERT_EQUAL(list_len(c.listen_imaps), 0);
	cfg_free(proxy_config_keys, &c);
}

/* A value for k that differs from its default and is valid, for test_example_config. */
static void poison_value(const struct cfg_key *k, const void *defaults, char *buf, size_t len)
{
	const void *f = (const char *)defaults + k->offset;
	int n = 0;

	switch (k->type) {
	case CFG_STRING:
	case CFG_STRLIST:
	{
		/* A value that passes the key's syntax check, if it has one, and differs from the default. */
		static const char *const candidates[] = {"none", "127.0.0.1:1", "imaps://poison.invalid",
		                                         "smtps://poison.invalid", "poison=poison", "/poison",
		                                         "https://poison.invalid/", "192.0.2.0/24", "http://poison.invalid:1",
		                                         "poison"};
		for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
			if ((k->validate && k->validate(candidates[i], NULL, 0) != 0) ||
			    strcmp(candidates[i], k->default_value) == 0)
				continue;
			snprintf(buf, len, "%s", candidates[i]);
			break;
		}
		break;
	}
	case CFG_BOOL:
		snprintf(buf, len, "%s", *(const bool *)f ? "false" : "true");
		break;
	case CFG_INT:
		snprintf(buf, len, "%.0f", (double)*(const long long *)f == k->min ? k->max : k->min);
		break;
	case CFG_SIZE:
		snprintf(buf, len, "%.0f", (double)*(const size_t *)f == k->min ? k->max : k->min);
		break;
	case CFG_DURATION: /* in ms: some minimums are below a second */
		snprintf(buf, len, "%.0fms", 1000 * (*(const double *)f == k->min ? k->max : k->min));
		break;
	case CFG_ENUM:
		while (k->enum_values[n])
			n++;
		snprintf(buf, len, "%s", k->enum_values[(*(const int *)f + 1) % n]);
		break;
	}
}

/*
 * etc/NAME loads, and sets every key (not merely leaves it) to its default:
 * every key is first set to some other valid value, then the file must bring
 * each one back. config_size is sizeof the table's struct.
 */
static void check_example_config(const struct cfg_key *table, size_t config_size, const char *name)
{
	const char *srcdir = getenv("top_srcdir");
	/* Run by hand from a build tree: find the sources through this file's own path. */
	const char *here = __FILE__, *cut = strstr(here, "tests/unit/test_cfg.c");
	void *c = calloc(1, config_size), *defaults = calloc(1, config_size);
	struct cfg_error err;
	char path[4096], value[64], msg[600];

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(defaults);
	if (srcdir && *srcdir)
		snprintf(path, sizeof(path), "%s/etc/%s", srcdir, name);
	else if (cut)
		snprintf(path, sizeof(path), "%.*setc/%s", (int)(cut - here), here, name);
	else
		snprintf(path, sizeof(path), "etc/%s", name);

	CU_ASSERT_EQUAL_FATAL(cfg_init_defaults(table, defaults, &err), 0);
	CU_ASSERT_EQUAL_FATAL(cfg_init_defaults(table, c, &err), 0);
	for (const struct cfg_key *k = table; k->name; k++) {
		poison_value(k, defaults, value, sizeof(value));
		CU_ASSERT_EQUAL(cfg_set(table, c, k->name, value, &err), 0);
		CU_ASSERT_FALSE(cfg_value_equal(k, c, defaults, false));
	}
	CU_ASSERT_EQUAL(cfg_load_file(table, c, path, &err), 0);
	if (err.message[0]) {
		cfg_format_error(&err, msg, sizeof(msg));
		fprintf(stderr, "\n  %s\n", msg);
	}
	CU_ASSERT_STRING_EQUAL(first_difference(table, c, defaults), "");
	cfg_free(table, c);
	cfg_free(table, defaults);
	free(c);
	free(defaults);
}

static void test_example_config(void)
{
	check_example_config(proxy_config_keys, sizeof(struct proxy_config), "pimap-proxy.yaml");
}

/* ---- pimap-gateway's table -------------------------------------------------- */

static void test_gateway_defaults(void)
{
	struct gateway_config c, d;
	struct cfg_error err;
	char *text;
	size_t len;

	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL_FATAL(cfg_init_defaults(gateway_config_keys, &c, &err), 0);
	CU_ASSERT_EQUAL_FATAL(list_len(c.listen_pimaps), 1);
	CU_ASSERT_STRING_EQUAL(c.listen_pimaps[0], "127.0.0.1:2993");
	CU_ASSERT_EQUAL_FATAL(list_len(c.listen_pimap), 1);
	CU_ASSERT_STRING_EQUAL(c.listen_pimap[0], "127.0.0.1:2143");
	CU_ASSERT_EQUAL(c.plaintext_login, PLAINTEXT_LOGIN_NEVER);
	CU_ASSERT_STRING_EQUAL(c.tls_cert_file, "");
	CU_ASSERT_STRING_EQUAL(c.tls_key_file, "");
	CU_ASSERT_STRING_EQUAL(c.store_url, "");
	CU_ASSERT_STRING_EQUAL(c.store_ca_file, "");
	CU_ASSERT_STRING_EQUAL(c.store_server_name, "");
	CU_ASSERT_FALSE(c.store_allow_plaintext);
	CU_ASSERT_TRUE(c.store_compress);
	CU_ASSERT_DOUBLE_EQUAL(c.store_connect_timeout, 10, 0);
	CU_ASSERT_DOUBLE_EQUAL(c.store_idle_refresh, 25 * 60, 0);
	CU_ASSERT_STRING_EQUAL(c.state_dir, "");
	CU_ASSERT_DOUBLE_EQUAL(c.session_lifetime, 3600, 0);
	CU_ASSERT_EQUAL(c.log_level, LOGV_INFO);
	CU_ASSERT_STRING_EQUAL(c.log_file, "");
	CU_ASSERT_FALSE(c.log_trace);
	CU_ASSERT_STRING_EQUAL(c.pid_file, "");
	CU_ASSERT_EQUAL(c.max_line_length, 64 * 1024);
	CU_ASSERT_EQUAL(c.max_literal_size, 64 * 1024 * 1024);
	CU_ASSERT_EQUAL(c.max_command_size, 128 * 1024 * 1024);
	CU_ASSERT_EQUAL(c.max_list_depth, 32);
	CU_ASSERT_EQUAL(c.max_output_queue, 1024 * 1024);
	CU_ASSERT_EQUAL(c.max_commands_in_flight, 64);
	CU_ASSERT_EQUAL(c.max_queued_events, 1000);
	CU_ASSERT_EQUAL(c.max_sessions_per_user, 16);
	CU_ASSERT_EQUAL(c.max_devices_per_user, 32);
	CU_ASSERT_EQUAL(c.max_connections_per_device, 8);
	CU_ASSERT_EQUAL(c.max_failed_logins, 10);
	CU_ASSERT_EQUAL(c.max_clients, 4096);
	CU_ASSERT_DOUBLE_EQUAL(c.preauth_timeout, 60, 0);
	CU_ASSERT_DOUBLE_EQUAL(c.idle_timeout, 31 * 60, 0);
	CU_ASSERT_DOUBLE_EQUAL(c.drain_timeout, 10, 0);

	/* The dump is a configuration that loads back to the same values. */
	text = dump_to_string(gateway_config_keys, &c, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	memset(&d, 0, sizeof(d));
	CU_ASSERT_EQUAL(cfg_init_defaults(gateway_config_keys, &d, &err), 0);
	CU_ASSERT_EQUAL(cfg_set(gateway_config_keys, &d, "session.lifetime", "2h", &err), 0);
	CU_ASSERT_EQUAL(cfg_set(gateway_config_keys, &d, "store.url", "imap://x.invalid", &err), 0);
	CU_ASSERT_EQUAL(cfg_load_string(gateway_config_keys, &d, text, len, "dump", &err), 0);
	CU_ASSERT_STRING_EQUAL(first_difference(gateway_config_keys, &c, &d), "");
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "session:\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  lifetime: 1h\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  idle_refresh: 25m\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  pimaps:\n    - \"127.0.0.1:2993\"\n"));
	free(text);
	cfg_free(gateway_config_keys, &c);
	cfg_free(gateway_config_keys, &d);
}

static void test_gateway_table(void)
{
	/* Fixed at startup: rebinding, re-deciding trust or moving the database. */
	static const char *const fixed[] = {
		"listen.pimaps", "listen.pimap", "tls.cert", "tls.key", "store.url", "store.ca_file",
		"store.server_name", "store.allow_plaintext", "store.compress",
		"store.connect_timeout", "state_dir", "pid_file",
		"listen.https", "http.path", "outband.webhook_ca_file",
		"submission.url", "submission.ca_file", "submission.server_name", "submission.allow_plaintext",
	};
	static const char *const also_reloadable[] = {"session.lifetime", "store.idle_refresh",
	                                             "listen.plaintext_login", "http.max_header_size",
	                                             "http.max_headers", "http.max_body_size",
	                                             "http.max_requests_per_minute", "http.max_connections",
	                                             "http.max_sessions", "http.header_timeout", "http.body_timeout",
	                                             "http.keepalive_timeout", "http.response_timeout",
	                                             "http.session_timeout", "outband.min_interval",
	                                             "outband.webhook_timeout", "outband.webhook_resolve_timeout",
	                                             "outband.webhook_allow", "outband.udp_allow",
	                                             /* read at each XDELIVER */
	                                             "submission.helo_name", "submission.connect_timeout",
	                                             "submission.timeout", "submission.dedup_window",
	                                             "submission.dedup_entries", "submission.max_concurrent", NULL};
	const struct cfg_key *e;

	check_key_table(gateway_config_keys, fixed, sizeof(fixed) / sizeof(fixed[0]), also_reloadable,
	                65 /* every field of struct gateway_config */);

	e = cfg_find(gateway_config_keys, "log.level");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(e->enum_values[LOGV_ERROR], "error");
	CU_ASSERT_STRING_EQUAL(e->enum_values[LOGV_DEBUG], "debug");
	CU_ASSERT_PTR_NULL(e->enum_values[LOGV_DEBUG + 1]);
	e = cfg_find(gateway_config_keys, "listen.plaintext_login");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(e->enum_values[PLAINTEXT_LOGIN_LOOPBACK], "loopback");
	CU_ASSERT_STRING_EQUAL(e->enum_values[PLAINTEXT_LOGIN_NEVER], "never");
	CU_ASSERT_STRING_EQUAL(e->enum_values[PLAINTEXT_LOGIN_ALWAYS], "always");
}

static void test_gateway_bounds(void)
{
	static const struct {
		const char *key, *value, *msg; /* msg NULL: accepted */
	} cases[] = {
		{"store.url", "imaps://store.example.org", NULL},
		{"store.url", "imap://127.0.0.1:1143", NULL},
		{"store.url", "imaps://[::1]:993", NULL},
		{"store.url", "", NULL},
		{"store.url", "pimaps://gw.example.org",
		 "store.url: a store is an IMAP server: expected imaps:// or imap://, not pimaps://"},
		{"store.url", "pimap://gw.example.org",
		 "store.url: a store is an IMAP server: expected imaps:// or imap://, not pimap://"},
		{"store.url", "https://gw.example.org/pimap",
		 "store.url: a store is an IMAP server: expected imaps:// or imap://, not https://"},
		{"store.url", "http://store.example.org",
		 "store.url: unknown scheme 'http' (expected imaps, imap, pimaps, pimap or https)"},
		{"store.url", "imaps://alice@store.example.org",
		 "store.url: user info (user@) is not allowed in URLs: credentials never go in URLs"},
		{"store.idle_refresh", "59s", "store.idle_refresh: must be between 1m and 29m"},
		{"store.idle_refresh", "1m", NULL},
		{"store.idle_refresh", "29m", NULL},
		{"store.idle_refresh", "30m", "store.idle_refresh: must be between 1m and 29m"},
		{"store.connect_timeout", "0.5", "store.connect_timeout: must be between 1s and 5m"},
		{"store.connect_timeout", "5m", NULL},
		{"session.lifetime", "0.5", "session.lifetime: must be between 1s and 720h"},
		{"session.lifetime", "1s", NULL},
		{"session.lifetime", "720h", NULL},
		{"session.lifetime", "721h", "session.lifetime: must be between 1s and 720h"},
		{"limits.max_line_length", "1023", "limits.max_line_length: must be between 1024 and 16777216"},
		{"limits.max_literal_size", "2049M", "limits.max_literal_size: must be between 1024 and 2147483648"},
		{"limits.max_commands_in_flight", "0", "limits.max_commands_in_flight: must be between 1 and 1024"},
		{"limits.max_commands_in_flight", "1024", NULL},
		{"limits.max_queued_events", "1", NULL},
		{"limits.max_queued_events", "1000001", "limits.max_queued_events: must be between 1 and 1000000"},
		{"limits.max_sessions_per_user", "0", "limits.max_sessions_per_user: must be between 1 and 1024"},
		{"limits.max_devices_per_user", "1025", "limits.max_devices_per_user: must be between 1 and 1024"},
		{"limits.max_connections_per_device", "257", "limits.max_connections_per_device: must be between 1 and 256"},
		{"limits.max_connections_per_device", "5", NULL},
		{"limits.max_failed_logins", "0", "limits.max_failed_logins: must be between 1 and 100000"},
		{"limits.max_clients", "100001", "limits.max_clients: must be between 1 and 100000"},
		{"limits.idle_timeout", "59s", "limits.idle_timeout: must be between 1m and 24h"},
		{"limits.drain_timeout", "0", NULL},
		{"listen.plaintext_login", "Loopback", NULL},
		{"listen.plaintext_login", "sometimes",
		 "listen.plaintext_login: expected one of: loopback, never, always, got 'sometimes'"},
		{"listen.pimaps", "0.0.0.0:2993, [::]:2993", NULL},
		{"listen.pimaps", "none", NULL},
		{"listen.pimap", "imaps://x:1", "listen.pimap: listen address 'imaps://x:1' is a URL; expected host:port"},
	};
	struct gateway_config c;
	struct cfg_error err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&c, 0, sizeof(c));
		CU_ASSERT_EQUAL_FATAL(cfg_init_defaults(gateway_config_keys, &c, &err), 0);
		int rc = cfg_set(gateway_config_keys, &c, cases[i].key, cases[i].value, &err);
		CU_ASSERT_EQUAL(rc, cases[i].msg ? -1 : 0);
		if (cases[i].msg)
			CU_ASSERT_STRING_EQUAL(err.message, cases[i].msg);
		if ((rc == 0) != !cases[i].msg || (cases[i].msg && strcmp(err.message, cases[i].msg) != 0))
			fprintf(stderr, "\n  %s=%s: rc=%d '%s'\n", cases[i].key, cases[i].value, rc,
			        rc ? err.message : "");
		cfg_free(gateway_config_keys, &c);
	}
}

/* A bad value in a gateway file names file:line:column, and leaves the other keys alone. */
static void test_gateway_file_errors(void)
{
	static const struct {
		const char *yaml;
		int         line, column;
		const char *msg;
	} cases[] = {
		{"store:\n  url: \"pimaps://gw.example.org\"\n", 2, 8,
		 "store.url: a store is an IMAP server: expected imaps:// or imap://, not pimaps://"},
		{"# gateway\nsession:\n  lifetime: 0s\n", 3, 13, "session.lifetime: must be between 1s and 720h"},
		/* list items are validated one by one, from a sequence or a single scalar */
		{"listen:\n  pimaps: [\"127.0.0.1:2993\", \"nowhere\"]\n", 2, 30,
		 "listen.pimaps: missing port in listen address 'nowhere' (expected host:port)"},
		{"listen:\n  pimap: nowhere\n", 2, 10,
		 "listen.pimap: missing port in listen address 'nowhere' (expected host:port)"},
		{"store:\n  compress: true\n  idle_refresh: 45m\n", 3, 17,
		 "store.idle_refresh: must be between 1m and 29m"},
		{"limits:\n  max_queued_events: many\n", 2, 22,
		 "limits.max_queued_events: expected an integer, got 'many'"},
		{"listen:\n  pimaps: []\n  plaintext_login: sometimes\n", 3, 20,
		 "listen.plaintext_login: expected one of: loopback, never, always, got 'sometimes'"},
		{"session:\n  lifetime: 2h\n  idle: 1m\n", 3, 3, "unknown key 'session.idle'"},
		/* a null is checked as "" is (found by fuzz_cfg: the dump of a null did not load) */
		{"http:\n  path:\n", 2, 8, "http.path: expected an absolute path such as /pimap"},
		{"http:\n  path: \"\"\n", 2, 9, "http.path: expected an absolute path such as /pimap"},
	};
	struct gateway_config c;
	struct cfg_error err;
	char msg[600];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&c, 0, sizeof(c));
		CU_ASSERT_EQUAL_FATAL(cfg_init_defaults(gateway_config_keys, &c, &err), 0);
		int rc = cfg_load_string(gateway_config_keys, &c, cases[i].yaml, strlen(cases[i].yaml),
		                         "gw.yaml", &err);
		CU_ASSERT_EQUAL(rc, -1);
		CU_ASSERT_STRING_EQUAL(err.file, "gw.yaml");
		CU_ASSERT_EQUAL(err.line, cases[i].line);
		CU_ASSERT_EQUAL(err.column, cases[i].column);
		CU_ASSERT_STRING_EQUAL(err.message, cases[i].msg);
		if (rc != -1 || err.line != cases[i].line || err.column != cases[i].column ||
		    strcmp(err.message, cases[i].msg) != 0)
			fprintf(stderr, "\n  case %zu: rc=%d %d:%d '%s'\n", i, rc, err.line, err.column,
			        err.message);
		cfg_free(gateway_config_keys, &c);
	}
	/* The formatted message is what the daemon prints. */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL_FATAL(cfg_init_defaults(gateway_config_keys, &c, &err), 0);
	CU_ASSERT_EQUAL(cfg_load_string(gateway_config_keys, &c, cases[1].yaml, strlen(cases[1].yaml),
	                                "gw.yaml", &err), -1);
	cfg_format_error(&err, msg, sizeof(msg));
	CU_ASSERT_STRING_EQUAL(msg, "gw.yaml:3:13: session.lifetime: must be between 1s and 720h");
	CU_ASSERT_DOUBLE_EQUAL(c.session_lifetime, 3600, 0);
	cfg_free(gateway_config_keys, &c);
}

static void test_gateway_example_config(void)
{
	check_example_config(gateway_config_keys, sizeof(struct gateway_config), "pimap-gateway.yaml");
}

void suite_cfg(void)
{
	ADD_SUITE("cfg",
	          {"defaults", test_defaults},
	          {"bad default", test_bad_default},
	          {"load every type", test_load_every_type},
	          {"flow mappings and dotted keys", test_flow_and_dotted},
	          {"partial and repeated load", test_partial_and_repeated_load},
	          {"empty documents", test_empty_documents},
	          {"bool values", test_bool_values},
	          {"int values", test_int_values},
	          {"size values", test_size_values},
	          {"duration values", test_duration_values},
	          {"enum values", test_enum_values},
	          {"string values", test_string_values},
	          {"string list values", test_strlist_values},
	          {"error positions", test_error_positions},
	          {"nesting limit", test_nesting_limit},
	          {"load file", test_load_file},
	          {"cfg_set", test_set},
	          {"format error", test_format_error},
	          {"dump round trip", test_dump_roundtrip},
	          {"proxy defaults and dump", test_proxy_defaults},
	          {"proxy table", test_proxy_table},
	          {"proxy bounds", test_proxy_bounds},
	          {"example config", test_example_config},
	          {"gateway defaults and dump", test_gateway_defaults},
	          {"gateway table", test_gateway_table},
	          {"gateway bounds", test_gateway_bounds},
	          {"gateway file errors", test_gateway_file_errors},
	          {"gateway example config", test_gateway_example_config});
}
