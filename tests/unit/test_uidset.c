/*
 * Unit tests for uidset.c (sorted UID sets) and syncdiff.c (the EXPUNGE /
 * EXISTS events between two views).
 *
 * Hand-written cases pin the exact output; randomised cases (fixed seed, so
 * a failure reproduces) compare against a plain bitmap reference and, for
 * syncdiff, replay the events on a copy of the old view the way a client
 * would and check that the result is the new view.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "suites.h"
#include "syncdiff.h"
#include "uidset.h"

/* Randomised rounds; the UID universe is kept small so that sets overlap. */
#define RANDOM_ROUNDS   3000
#define RANDOM_UID_MAX  200

/* The set's compact text, NUL-terminated, in a static buffer. */
static const char *fmt(const struct uidset *set)
{
	static char text[4096];
	struct buf out;

	buf_init(&out, 0);
	uidset_format(set, &out);
	CU_ASSERT_FATAL(buf_len(&out) < sizeof(text));
	if (buf_len(&out))
		memcpy(text, buf_head(&out), buf_len(&out));
	text[buf_len(&out)] = '\0';
	buf_free(&out);
	return text;
}

/* The invariant every operation must keep: strictly ascending, no 0. */
static bool well_formed(const struct uidset *set)
{
	if (set->count > set->cap)
		return false;
	for (size_t i = 0; i < set->count; i++)
		if (set->uids[i] == 0 || (i && set->uids[i - 1] >= set->uids[i]))
			return false;
	return true;
}

/* Parse text into a fresh set and compare its formatted form. */
static void expect_parse(const char *text, const char *want)
{
	struct uidset set;
	char err[128] = "";

	uidset_init(&set);
	CU_ASSERT_EQUAL(uidset_parse(&set, text, strlen(text), err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_TRUE(well_formed(&set));
	CU_ASSERT_STRING_EQUAL(fmt(&set), want);
	uidset_free(&set);
}

/* Parsing must fail with an error containing `why`, leaving the set as it was. */
static void expect_parse_error(const char *text, const char *why)
{
	struct uidset set;
	char err[128] = "";

	uidset_init(&set);
	uidset_add_range(&set, 3, 5);
	uidset_add(&set, 9);
	CU_ASSERT_EQUAL(uidset_parse(&set, text, strlen(text), err, sizeof(err)), -1);
	if (strstr(err, why) == NULL)
		fprintf(stderr, "\n  \"%s\": error \"%s\", expected \"%s\"\n", text, err, why);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, why));
	CU_ASSERT_STRING_EQUAL(fmt(&set), "3:5,9");
	uidset_free(&set);
}

/* ---- uidset --------------------------------------------------------------- */

static void test_add_contains_seq(void)
{
	struct uidset set;

	uidset_init(&set);
	CU_ASSERT_EQUAL(set.count, 0);
	CU_ASSERT_EQUAL(uidset_max(&set), 0);
	CU_ASSERT_FALSE(uidset_contains(&set, 1));
	CU_ASSERT_EQUAL(uidset_seq_of(&set, 1), 0);

	uidset_add(&set, 10);
	uidset_add(&set, 3);
	uidset_add(&set, 7);
	uidset_add(&set, 10); /* duplicate: no-op */
	uidset_add(&set, 20);
	uidset_add(&set, 1);
	CU_ASSERT_TRUE(well_formed(&set));
	CU_ASSERT_EQUAL(set.count, 5);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "1,3,7,10,20");
	CU_ASSERT_EQUAL(uidset_max(&set), 20);
	CU_ASSERT_EQUAL(uidset_seq_of(&set, 1), 1);
	CU_ASSERT_EQUAL(uidset_seq_of(&set, 7), 3);
	CU_ASSERT_EQUAL(uidset_seq_of(&set, 20), 5);
	CU_ASSERT_EQUAL(uidset_seq_of(&set, 8), 0);
	CU_ASSERT_EQUAL(uidset_seq_of(&set, 21), 0);
	CU_ASSERT_EQUAL(uidset_seq_of(&set, UINT32_MAX), 0);
	CU_ASSERT_TRUE(uidset_contains(&set, 10));
	CU_ASSERT_FALSE(uidset_contains(&set, 2));

	uidset_add(&set, UINT32_MAX);
	CU_ASSERT_EQUAL(uidset_max(&set), UINT32_MAX);
	CU_ASSERT_EQUAL(uidset_seq_of(&set, UINT32_MAX), 6);

	uidset_clear(&set);
	CU_ASSERT_EQUAL(set.count, 0);
	CU_ASSERT_FALSE(uidset_contains(&set, 10));
	uidset_add(&set, 4); /* the set is usable after clear */
	CU_ASSERT_STRING_EQUAL(fmt(&set), "4");
	uidset_free(&set);
	CU_ASSERT_PTR_NULL(set.uids);
	CU_ASSERT_EQUAL(set.count, 0);
}

static void test_ascending_append_growth(void)
{
	struct uidset set;

	uidset_init(&set);
	for (uint32_t u = 1; u <= 100000; u++)
		uidset_add(&set, u * 2);
	CU_ASSERT_EQUAL(set.count, 100000);
	CU_ASSERT_TRUE(well_formed(&set));
	/* amortised growth: capacity is within a factor 2 of the count */
	CU_ASSERT_TRUE(set.cap >= set.count && set.cap <= 2 * set.count);
	CU_ASSERT_EQUAL(uidset_seq_of(&set, 2 * 54321), 54321);
	uidset_free(&set);
}

static void test_remove(void)
{
	struct uidset set;

	uidset_init(&set);
	CU_ASSERT_FALSE(uidset_remove(&set, 1)); /* empty */
	uidset_add_range(&set, 1, 5);
	CU_ASSERT_TRUE(uidset_remove(&set, 3));
	CU_ASSERT_FALSE(uidset_remove(&set, 3));
	CU_ASSERT_FALSE(uidset_remove(&set, 6));
	CU_ASSERT_TRUE(uidset_remove(&set, 1));
	CU_ASSERT_TRUE(uidset_remove(&set, 5));
	CU_ASSERT_STRING_EQUAL(fmt(&set), "2,4");
	CU_ASSERT_EQUAL(uidset_seq_of(&set, 4), 2);
	uidset_free(&set);
}

static void test_add_range(void)
{
	struct uidset set;

	uidset_init(&set);
	uidset_add_range(&set, 5, 5);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "5");
	uidset_add_range(&set, 10, 12); /* append */
	CU_ASSERT_STRING_EQUAL(fmt(&set), "5,10:12");
	uidset_add_range(&set, 1, 2); /* before everything */
	CU_ASSERT_STRING_EQUAL(fmt(&set), "1:2,5,10:12");
	uidset_add_range(&set, 4, 11); /* covers 5 and 10:11, joins runs */
	CU_ASSERT_STRING_EQUAL(fmt(&set), "1:2,4:12");
	uidset_add_range(&set, 3, 3);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "1:12");
	uidset_add_range(&set, 2, 6); /* nothing new */
	CU_ASSERT_EQUAL(set.count, 12);
	uidset_add_range(&set, UINT32_MAX - 2, UINT32_MAX);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "1:12,4294967293:4294967295");
	uidset_add_range(&set, UINT32_MAX - 4, UINT32_MAX); /* last == UINT32_MAX, overlapping */
	CU_ASSERT_STRING_EQUAL(fmt(&set), "1:12,4294967291:4294967295");
	CU_ASSERT_TRUE(well_formed(&set));
	uidset_free(&set);
}

static void test_copy(void)
{
	struct uidset a, b;

	uidset_init(&a);
	uidset_init(&b);
	uidset_add_range(&a, 1, 40);
	uidset_add(&b, 99);
	uidset_copy(&b, &a); /* b's old member is replaced */
	CU_ASSERT_STRING_EQUAL(fmt(&b), "1:40");
	CU_ASSERT_PTR_NOT_EQUAL(a.uids, b.uids);
	uidset_add(&b, 50); /* independent storage */
	CU_ASSERT_FALSE(uidset_contains(&a, 50));
	uidset_copy(&b, &b);
	CU_ASSERT_STRING_EQUAL(fmt(&b), "1:40,50");

	uidset_clear(&a);
	uidset_copy(&b, &a); /* copying the empty set */
	CU_ASSERT_EQUAL(b.count, 0);
	uidset_free(&a);
	uidset_free(&b);
}

static void test_format(void)
{
	struct uidset set;

	uidset_init(&set);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "");
	uidset_add(&set, 7);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "7");
	uidset_add(&set, 8);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "7:8");
	uidset_add(&set, 10);
	uidset_add(&set, 1);
	uidset_add_range(&set, 12, 500);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "1,7:8,10,12:500");

	/* format appends: existing buffer content stays */
	struct buf out;
	buf_init(&out, 0);
	buf_append_str(&out, "UID FETCH ");
	uidset_format(&set, &out);
	buf_append(&out, "", 1);
	CU_ASSERT_STRING_EQUAL((const char *)buf_head(&out), "UID FETCH 1,7:8,10,12:500");
	buf_free(&out);
	uidset_free(&set);
}

static void test_parse_good(void)
{
	expect_parse("", "");
	expect_parse("1", "1");
	expect_parse("1:5,7,9:8", "1:5,7:9");
	expect_parse("9:7", "7:9");
	expect_parse("5,1:3,2,4", "1:5");
	expect_parse("1:3,3:5", "1:5");
	expect_parse("10,1,20:22,2", "1:2,10,20:22");
	expect_parse("4294967295", "4294967295");
	expect_parse("4294967295:4294967290", "4294967290:4294967295");
	expect_parse("1:1", "1");
	expect_parse("100,50:60,55,61", "50:61,100");

	/* parse adds to what the set holds */
	struct uidset set;
	char err[128];
	uidset_init(&set);
	uidset_add_range(&set, 3, 5);
	uidset_add(&set, 100);
	CU_ASSERT_EQUAL(uidset_parse(&set, "1,4:7,50", 8, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "1,3:7,50,100");
	CU_ASSERT_EQUAL(uidset_parse(&set, "", 0, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "1,3:7,50,100");
	/* len bounds the text: what follows is not read */
	CU_ASSERT_EQUAL(uidset_parse(&set, "200,garbage", 3, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "1,3:7,50,100,200");
	CU_ASSERT_TRUE(well_formed(&set));
	uidset_clear(&set);

	/* overlapping input (members counted twice) leaves a capacity that is
	 * really allocated: appends after it stay inside (ASan checks) */
	uidset_add(&set, 2);
	CU_ASSERT_EQUAL(uidset_parse(&set, "1:30,1:30,5,6", 13, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(set.count, 30);
	for (uint32_t u = 31; u <= 200; u++)
		uidset_add(&set, u);
	CU_ASSERT_STRING_EQUAL(fmt(&set), "1:200");
	uidset_free(&set);
}

static void test_parse_errors(void)
{
	expect_parse_error("1:", "missing number at the end");
	expect_parse_error("a", "unexpected character at offset 0");
	expect_parse_error("0", "start at 1");
	expect_parse_error("5:0", "start at 1");
	expect_parse_error("01", "leading zero");
	expect_parse_error("*", "\"*\" is not accepted");
	expect_parse_error("1:*", "\"*\" is not accepted");
	expect_parse_error("4294967296", "exceeds 4294967295");
	expect_parse_error("1:99999999999999999999", "exceeds 4294967295");
	expect_parse_error("1,,2", "empty element at offset 2");
	expect_parse_error(",1", "empty element at offset 0");
	expect_parse_error("1,", "trailing \",\"");
	expect_parse_error(":1", "missing number before \":\"");
	expect_parse_error("1::2", "missing number before \":\"");
	expect_parse_error("1:2:3", "unexpected character at offset 3");
	expect_parse_error("1 2", "unexpected character at offset 1");
	expect_parse_error("1,2x", "unexpected character at offset 3");
	expect_parse_error("-1", "unexpected character at offset 0");
	/* the hostile "everything" set, and a total over the cap built from parts */
	expect_parse_error("1:4294967295", "more than 10000000 UIDs");
	expect_parse_error("1:6000000,20000001:24000001", "more than 10000000 UIDs");

	/* a NUL inside the given length is garbage too */
	struct uidset set;
	char err[128];
	uidset_init(&set);
	CU_ASSERT_EQUAL(uidset_parse(&set, "1\0002", 3, err, sizeof(err)), -1);
	CU_ASSERT_EQUAL(set.count, 0);
	/* no room for a message is allowed */
	CU_ASSERT_EQUAL(uidset_parse(&set, "x", 1, NULL, 0), -1);
	uidset_free(&set);
}

static void test_parse_cap_boundary(void)
{
	struct uidset set;
	char err[128];

	uidset_init(&set);
	/* exactly the cap is fine, one more is not */
	CU_ASSERT_EQUAL(uidset_parse(&set, "10000000:1", 10, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(set.count, UIDSET_MAX_PARSE_COUNT);
	CU_ASSERT_EQUAL(uidset_max(&set), UIDSET_MAX_PARSE_COUNT);
	uidset_clear(&set);
	CU_ASSERT_EQUAL(uidset_parse(&set, "10000001:1", 10, err, sizeof(err)), -1);
	CU_ASSERT_EQUAL(set.count, 0);
	uidset_free(&set);
}

/* Descending singletons: quadratic insertion would take minutes here. */
static void test_parse_unsorted_large(void)
{
	enum { N = 200000 };
	struct buf text;
	struct uidset set;
	char err[128];

	buf_init(&text, 0);
	for (uint32_t u = N; u >= 1; u--)
		buf_printf(&text, "%s%u", u == N ? "" : ",", (unsigned)(u * 3));
	uidset_init(&set);
	CU_ASSERT_EQUAL(uidset_parse(&set, (const char *)buf_head(&text), buf_len(&text), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(set.count, N);
	CU_ASSERT_TRUE(well_formed(&set));
	CU_ASSERT_EQUAL(uidset_seq_of(&set, 3 * 1000), 1000);
	buf_free(&text);
	uidset_free(&set);
}

static void test_set_algebra(void)
{
	struct uidset a, b, out;
	char err[64];

	uidset_init(&a);
	uidset_init(&b);
	uidset_init(&out);
	CU_ASSERT_EQUAL(uidset_parse(&a, "1:10,20,30:32", 13, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(uidset_parse(&b, "5:25,31,40", 10, err, sizeof(err)), 0);
	uidset_add(&out, 777); /* out is cleared first */
	uidset_difference(&a, &b, &out);
	CU_ASSERT_STRING_EQUAL(fmt(&out), "1:4,30,32");
	uidset_difference(&b, &a, &out);
	CU_ASSERT_STRING_EQUAL(fmt(&out), "11:19,21:25,40");
	uidset_intersection(&a, &b, &out);
	CU_ASSERT_STRING_EQUAL(fmt(&out), "5:10,20,31");
	uidset_intersection(&b, &a, &out);
	CU_ASSERT_STRING_EQUAL(fmt(&out), "5:10,20,31");

	uidset_clear(&b);
	uidset_difference(&a, &b, &out);
	CU_ASSERT_STRING_EQUAL(fmt(&out), "1:10,20,30:32");
	uidset_intersection(&a, &b, &out);
	CU_ASSERT_STRING_EQUAL(fmt(&out), "");
	uidset_difference(&b, &a, &out);
	CU_ASSERT_STRING_EQUAL(fmt(&out), "");
	uidset_free(&a);
	uidset_free(&b);
	uidset_free(&out);
}

/* Random operations checked against a bitmap. */
static void test_random_against_bitmap(void)
{
	bool ref_a[RANDOM_UID_MAX + 1], ref_b[RANDOM_UID_MAX + 1];
	struct uidset a, b, out, back;
	char err[128];

	unit_rng_seed(12345);
	uidset_init(&a);
	uidset_init(&b);
	uidset_init(&out);
	uidset_init(&back);
	for (int round = 0; round < 300; round++) {
		memset(ref_a, 0, sizeof(ref_a));
		memset(ref_b, 0, sizeof(ref_b));
		uidset_clear(&a);
		uidset_clear(&b);
		for (int op = 0; op < 60; op++) {
			uint32_t u = 1 + unit_rng_below(RANDOM_UID_MAX);
			uint32_t v = 1 + unit_rng_below(RANDOM_UID_MAX);
			switch (unit_rng_below(4)) {
			case 0:
				uidset_add(&a, u);
				ref_a[u] = true;
				break;
			case 1:
				CU_ASSERT_EQUAL(uidset_remove(&a, u), ref_a[u]);
				ref_a[u] = false;
				break;
			case 2: {
				uint32_t lo = u < v ? u : v, hi = u < v ? v : u;
				if (hi - lo > 20)
					hi = lo + 20;
				uidset_add_range(&a, lo, hi);
				for (uint32_t x = lo; x <= hi; x++)
					ref_a[x] = true;
				break;
			}
			default: {
				/* parse a little random sequence-set into b */
				char text[64];
				int n = snprintf(text, sizeof(text), "%u:%u,%u", (unsigned)u, (unsigned)v,
				                 (unsigned)(1 + unit_rng_below(RANDOM_UID_MAX)));
				CU_ASSERT_EQUAL(uidset_parse(&b, text, (size_t)n, err, sizeof(err)), 0);
				uint32_t lo = u < v ? u : v, hi = u < v ? v : u;
				for (uint32_t x = lo; x <= hi; x++)
					ref_b[x] = true;
				unsigned third;
				CU_ASSERT_EQUAL(sscanf(strrchr(text, ',') + 1, "%u", &third), 1);
				ref_b[third] = true;
				break;
			}
			}
		}
		CU_ASSERT_TRUE(well_formed(&a));
		CU_ASSERT_TRUE(well_formed(&b));
		size_t seq = 0;
		for (uint32_t x = 1; x <= RANDOM_UID_MAX; x++) {
			CU_ASSERT_EQUAL(uidset_contains(&a, x), ref_a[x]);
			CU_ASSERT_EQUAL(uidset_contains(&b, x), ref_b[x]);
			if (ref_a[x])
				seq++;
			CU_ASSERT_EQUAL(uidset_seq_of(&a, x), ref_a[x] ? seq : 0);
		}
		uidset_difference(&a, &b, &out);
		for (uint32_t x = 1; x <= RANDOM_UID_MAX; x++)
			CU_ASSERT_EQUAL(uidset_contains(&out, x), ref_a[x] && !ref_b[x]);
		uidset_intersection(&a, &b, &out);
		for (uint32_t x = 1; x <= RANDOM_UID_MAX; x++)
			CU_ASSERT_EQUAL(uidset_contains(&out, x), ref_a[x] && ref_b[x]);

		/* format and parse round-trip */
		const char *text = fmt(&a);
		uidset_clear(&back);
		CU_ASSERT_EQUAL(uidset_parse(&back, text, strlen(text), err, sizeof(err)), 0);
		CU_ASSERT_EQUAL(back.count, a.count);
		CU_ASSERT_TRUE(back.count == a.count &&
		               (a.count == 0 || memcmp(back.uids, a.uids, a.count * sizeof(a.uids[0])) == 0));
	}
	uidset_free(&a);
	uidset_free(&b);
	uidset_free(&out);
	uidset_free(&back);
}

/* ---- syncdiff ------------------------------------------------------------- */

/*
 * Replay the events on a copy of seen the way a client keeps its sequence
 * map, checking each event is valid at the moment it is read; true if the
 * result is exactly now.
 */
static bool replay(const struct uidset *seen, const struct uidset *now, const struct sync_diff *diff)
{
	uint32_t *view = malloc((seen->count + diff->count + 1) * sizeof(*view));
	size_t n = seen->count, expunged = 0, added = 0;
	bool ok = true, in_exists = false;

	if (seen->count)
		memcpy(view, seen->uids, seen->count * sizeof(*view));
	for (size_t i = 0; ok && i < diff->count; i++) {
		const struct sync_event *ev = &diff->events[i];
		if (ev->kind == SYNC_EXPUNGE) {
			/* all EXPUNGEs come first, highest sequence number first */
			ok = !in_exists && ev->seq >= 1 && ev->seq <= n && view[ev->seq - 1] == ev->uid &&
			     (i == 0 || diff->events[i - 1].seq > ev->seq);
			if (ok) {
				memmove(&view[ev->seq - 1], &view[ev->seq], (n - ev->seq) * sizeof(*view));
				n--;
				expunged++;
			}
		} else {
			in_exists = true;
			ok = ev->seq == n + 1 && (n == 0 || ev->uid > view[n - 1]);
			if (ok) {
				view[n++] = ev->uid;
				added++;
			}
		}
	}
	ok = ok && n == now->count && (n == 0 || memcmp(view, now->uids, n * sizeof(*view)) == 0) &&
	     expunged == diff->expunged && added == diff->added && expunged + added == diff->count;
	free(view);
	return ok;
}

static void set_from(struct uidset *set, const char *text)
{
	char err[64];

	uidset_clear(set);
	CU_ASSERT_EQUAL_FATAL(uidset_parse(set, text, strlen(text), err, sizeof(err)), 0);
}

/* Run syncdiff on two texts and compare the events with want
 * ("E3 E1 X2" = EXPUNGE 3, EXPUNGE 1, EXISTS 2), "" for none. */
static void expect_diff(const char *seen_text, const char *now_text, const char *want)
{
	struct uidset seen, now;
	struct sync_diff diff;
	char got[512] = "";
	size_t used = 0;

	uidset_init(&seen);
	uidset_init(&now);
	set_from(&seen, seen_text);
	set_from(&now, now_text);
	CU_ASSERT_EQUAL(syncdiff_compute(&seen, &now, &diff), SYNCDIFF_OK);
	for (size_t i = 0; i < diff.count; i++)
		used += (size_t)snprintf(got + used, sizeof(got) - used, "%s%c%u/%u", i ? " " : "",
		                         diff.events[i].kind == SYNC_EXPUNGE ? 'E' : 'X', (unsigned)diff.events[i].seq,
		                         (unsigned)diff.events[i].uid);
	if (strcmp(got, want) != 0)
		fprintf(stderr, "\n  %s -> %s: got \"%s\", want \"%s\"\n", seen_text, now_text, got, want);
	CU_ASSERT_STRING_EQUAL(got, want);
	CU_ASSERT_TRUE(replay(&seen, &now, &diff));
	syncdiff_free(&diff);
	CU_ASSERT_PTR_NULL(diff.events);
	CU_ASSERT_EQUAL(diff.count, 0);
	uidset_free(&seen);
	uidset_free(&now);
}

static void test_syncdiff_cases(void)
{
	expect_diff("", "", "");
	expect_diff("1:5", "1:5", "");
	expect_diff("", "4,9", "X1/4 X2/9");
	expect_diff("4,9", "", "E2/9 E1/4");
	/* seq of an EXPUNGE is its position in the seen view */
	expect_diff("10,20,30,40,50", "10,30,50", "E4/40 E2/20");
	expect_diff("10,20,30", "10,20,30,31,35", "X4/31 X5/35");
	/* EXISTS counts start from what is left after the expunges */
	expect_diff("1:5", "2,4,6,7", "E5/5 E3/3 E1/1 X3/6 X4/7");
	/* a new UID below an expunged (not kept) one is fine */
	expect_diff("1,5", "1,3", "E2/5 X2/3");
	expect_diff("5", "3", "E1/5 X1/3");
	expect_diff("5:7", "1:2", "E3/7 E2/6 E1/5 X1/1 X2/2");
	/* every member expunged but the first and last */
	expect_diff("1:6", "1,6", "E5/5 E4/4 E3/3 E2/2");
}

static void test_syncdiff_reordered(void)
{
	struct uidset seen, now;
	struct sync_diff diff;

	uidset_init(&seen);
	uidset_init(&now);
	set_from(&seen, "1,5");
	set_from(&now, "3,5"); /* 3 is new and below the kept 5 */
	CU_ASSERT_EQUAL(syncdiff_compute(&seen, &now, &diff), SYNCDIFF_REORDERED);
	CU_ASSERT_EQUAL(diff.count, 0);
	CU_ASSERT_PTR_NULL(diff.events);
	syncdiff_free(&diff); /* always safe */

	set_from(&seen, "2,4,6");
	set_from(&now, "1,2,4,6,7");
	CU_ASSERT_EQUAL(syncdiff_compute(&seen, &now, &diff), SYNCDIFF_REORDERED);
	syncdiff_free(&diff);

	/* only kept UIDs count: 5 is below the kept 6, 7 is above the kept 4 */
	set_from(&seen, "2,4,6,8");
	set_from(&now, "2,5,6");
	CU_ASSERT_EQUAL(syncdiff_compute(&seen, &now, &diff), SYNCDIFF_REORDERED);
	syncdiff_free(&diff);
	set_from(&now, "2,4,7");
	CU_ASSERT_EQUAL(syncdiff_compute(&seen, &now, &diff), SYNCDIFF_OK);
	CU_ASSERT_EQUAL(diff.count, 3);
	CU_ASSERT_TRUE(replay(&seen, &now, &diff));
	syncdiff_free(&diff);
	uidset_free(&seen);
	uidset_free(&now);
}

/* Random views: either the diff replays to `now`, or it is REORDERED and a
 * new UID really lies below a kept one. */
static void test_syncdiff_random(void)
{
	struct uidset seen, now;
	struct sync_diff diff;
	unsigned ok_count = 0, reordered = 0;

	unit_rng_seed(20240601);
	uidset_init(&seen);
	uidset_init(&now);
	for (int round = 0; round < RANDOM_ROUNDS; round++) {
		uint32_t max_seen = 0;
		uidset_clear(&seen);
		uidset_clear(&now);
		for (uint32_t u = 1; u <= RANDOM_UID_MAX / 2; u++)
			if (unit_rng_below(3) == 0)
				uidset_add(&seen, u);
		max_seen = uidset_max(&seen);
		/* keep each seen UID with some probability */
		uint32_t keep_pct = unit_rng_below(101);
		for (size_t i = 0; i < seen.count; i++)
			if (unit_rng_below(100) < keep_pct)
				uidset_add(&now, seen.uids[i]);
		/* new mail: usually above everything seen, sometimes (1 round in 4) anywhere */
		bool anywhere = unit_rng_below(4) == 0;
		uint32_t nnew = unit_rng_below(8);
		for (uint32_t k = 0; k < nnew; k++) {
			uint32_t u = anywhere ? 1 + unit_rng_below(RANDOM_UID_MAX) : max_seen + 1 + unit_rng_below(RANDOM_UID_MAX);
			if (!uidset_contains(&seen, u))
				uidset_add(&now, u);
		}

		/* the reference predicate, by brute force */
		bool expect_reorder = false;
		for (size_t i = 0; i < now.count; i++) {
			if (uidset_contains(&seen, now.uids[i]))
				continue;
			for (size_t j = 0; j < now.count; j++)
				if (now.uids[j] > now.uids[i] && uidset_contains(&seen, now.uids[j]))
					expect_reorder = true;
		}

		enum syncdiff_result r = syncdiff_compute(&seen, &now, &diff);
		CU_ASSERT_EQUAL(r, expect_reorder ? SYNCDIFF_REORDERED : SYNCDIFF_OK);
		if (r == SYNCDIFF_OK) {
			CU_ASSERT_TRUE(replay(&seen, &now, &diff));
			ok_count++;
		} else {
			CU_ASSERT_EQUAL(diff.count, 0);
			reordered++;
		}
		syncdiff_free(&diff);
	}
	/* the generator must exercise both outcomes */
	CU_ASSERT_TRUE(ok_count > RANDOM_ROUNDS / 2);
	CU_ASSERT_TRUE(reordered > 50);
	uidset_free(&seen);
	uidset_free(&now);
}

/* A self-check: replay() must reject wrong events, or the tests above prove nothing. */
static void test_replay_detects_errors(void)
{
	struct uidset seen, now;
	struct sync_event ev[2];
	struct sync_diff diff = {.events = ev, .count = 1, .expunged = 1, .added = 0};

	uidset_init(&seen);
	uidset_init(&now);
	set_from(&seen, "1:3");
	set_from(&now, "1,3");
	ev[0] = (struct sync_event){SYNC_EXPUNGE, 2, 2};
	CU_ASSERT_TRUE(replay(&seen, &now, &diff));
	ev[0].seq = 3; /* wrong position */
	CU_ASSERT_FALSE(replay(&seen, &now, &diff));
	set_from(&now, "1");
	ev[0] = (struct sync_event){SYNC_EXPUNGE, 2, 2};
	ev[1] = (struct sync_event){SYNC_EXPUNGE, 3, 3}; /* ascending: the 3 is stale */
	diff.count = 2;
	diff.expunged = 2;
	CU_ASSERT_FALSE(replay(&seen, &now, &diff));
	set_from(&now, "1:4");
	ev[0] = (struct sync_event){SYNC_EXISTS, 5, 4}; /* count should be 4 */
	diff.count = 1;
	diff.expunged = 0;
	diff.added = 1;
	CU_ASSERT_FALSE(replay(&seen, &now, &diff));
	uidset_free(&seen);
	uidset_free(&now);
}

void suite_uidset(void)
{
	ADD_SUITE("uidset",
	          {"add, contains, seq_of, max, clear", test_add_contains_seq},
	          {"ascending appends, amortised growth", test_ascending_append_growth},
	          {"remove", test_remove},
	          {"add_range", test_add_range},
	          {"copy", test_copy},
	          {"format collapses runs", test_format},
	          {"parse: good sets", test_parse_good},
	          {"parse: every error", test_parse_errors},
	          {"parse: member cap boundary", test_parse_cap_boundary},
	          {"parse: large unsorted input", test_parse_unsorted_large},
	          {"difference and intersection", test_set_algebra},
	          {"random operations vs bitmap", test_random_against_bitmap},
	          {"syncdiff: hand-written cases", test_syncdiff_cases},
	          {"syncdiff: reordered UIDs", test_syncdiff_reordered},
	          {"syncdiff: random views replay", test_syncdiff_random},
	          {"syncdiff: replay checker rejects bad events", test_replay_detects_errors});
}
