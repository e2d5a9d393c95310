/*
 * Unit tests for fview.c: the map of a filtered view.
 *
 * A model-based test drives the view with random store events (new mail,
 * expunges, ageing) and random flushes, and after every step compares it
 * with a plain reference (arrays): the client's count, every sequence
 * number <-> UID, every store number -> UID, the EXPUNGE/EXISTS lines a
 * client reads (replayed on the reference client view), and translations
 * of random sequence and UID sets. Fixed seeds: a failure reproduces.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "fview.h"
#include "imap_parse.h"
#include "suites.h"
#include "uidset.h"


/* ---- reference model ---------------------------------------------------- */

#define MAXM 6000

struct ref {
	uint32_t store[MAXM]; /* store UIDs in order */
	bool match[MAXM];     /* parallel: in the view */
	size_t ns;
	uint32_t client[MAXM]; /* what the client was told, in order */
	size_t nc;
	uint32_t next_uid;
};

static bool ref_store_has(const struct ref *r, uint32_t uid, bool *match)
{
	for (size_t i = 0; i < r->ns; i++)
		if (r->store[i] == uid) {
			if (match)
				*match = r->match[i];
			return true;
		}
	return false;
}

/* Apply "* n EXPUNGE" / "* n EXISTS" lines to the reference client, as a client would. */
static void client_apply(struct ref *r, const struct buf *lines, const uint32_t *new_uids, size_t nnew)
{
	char *s = buf_str(lines);
	size_t k = 0;
	for (char *line = strtok(s, "\r\n"); line; line = strtok(NULL, "\r\n")) {
		unsigned n;
		char word[16];
		CU_ASSERT_FATAL(sscanf(line, "* %u %15s", &n, word) == 2);
		if (strcmp(word, "EXPUNGE") == 0) {
			CU_ASSERT_FATAL(n >= 1 && n <= r->nc);
			memmove(&r->client[n - 1], &r->client[n], (r->nc - n) * sizeof(uint32_t));
			r->nc--;
		} else {
			CU_ASSERT_STRING_EQUAL_FATAL(word, "EXISTS");
			CU_ASSERT_FATAL(n >= r->nc);
			while (r->nc < n) {
				CU_ASSERT_FATAL(k < nnew);
				r->client[r->nc++] = new_uids[k++];
			}
		}
	}
	CU_ASSERT_EQUAL(k, nnew);
	free(s);
}

/* Compare the view with the reference; plain comparisons (CUnit records every
 * assertion, and this runs thousands of times), one assertion for the lot. */
static void check_consistent(const struct fview *v, const struct ref *r)
{
	bool ok = fview_count(v) == r->nc && fview_uid_at(v, (uint32_t)r->nc + 1) == 0 &&
	          fview_store_count(v) == r->ns;
	for (size_t i = 0; ok && i < r->nc; i++)
		ok = fview_uid_at(v, (uint32_t)i + 1) == r->client[i] && fview_seq_of(v, r->client[i]) == i + 1;
	for (size_t i = 0; ok && i < r->ns; i++)
		ok = fview_store_uid(v, (uint32_t)i + 1) == r->store[i];
	/* a few random sequence sets and UID sets */
	for (int t = 0; ok && t < 3 && r->nc; t++) {
		uint32_t a = 1 + unit_rng_below((uint32_t)r->nc), b = 1 + unit_rng_below((uint32_t)r->nc);
		char text[64];
		snprintf(text, sizeof(text), "%u:%u,%u", a, b, a);
		struct uidset got;
		uidset_init(&got);
		char err[128];
		ok = fview_seqset(v, text, strlen(text), &got, err, sizeof(err)) == 0;
		uint32_t lo = a < b ? a : b, hi = a < b ? b : a;
		ok = ok && got.count == hi - lo + 1;
		for (uint32_t s = lo; ok && s <= hi; s++)
			ok = got.uids[s - lo] == r->client[s - 1];
		uidset_clear(&got);
		uint32_t ulo = 1 + unit_rng_below(r->next_uid + 2), uhi = 1 + unit_rng_below(r->next_uid + 2);
		snprintf(text, sizeof(text), "%u:%u", ulo, uhi);
		ok = ok && fview_uidset(v, text, strlen(text), &got, err, sizeof(err)) == 0;
		if (ulo > uhi) {
			uint32_t x = ulo;
			ulo = uhi;
			uhi = x;
		}
		size_t want = 0;
		for (size_t i = 0; i < r->nc; i++)
			if (r->client[i] >= ulo && r->client[i] <= uhi)
				want++;
		ok = ok && got.count == want;
		uidset_free(&got);
	}
	CU_ASSERT_FATAL(ok);
}

static void model_run(uint32_t seed, unsigned steps, bool big)
{
	unit_rng_seed(seed);
	struct ref *r = calloc(1, sizeof(*r));
	struct fview *v = fview_new();
	struct uidset all, match;
	uidset_init(&all);
	uidset_init(&match);
	r->next_uid = 1;
	unsigned start = big ? 3000 : 20;
	for (unsigned i = 0; i < start; i++) {
		uint32_t u = r->next_uid;
		r->next_uid += 1 + unit_rng_below(3);
		bool m = unit_rng_below(3) != 0;
		r->store[r->ns] = u;
		r->match[r->ns++] = m;
		uidset_add(&all, u);
		if (m) {
			uidset_add(&match, u);
			r->client[r->nc++] = u;
		}
	}
	fview_load(v, &all, &match);
	check_consistent(v, r);
	struct buf out;
	buf_init(&out, 0);
	for (unsigned step = 0; step < steps; step++) {
		unsigned op = unit_rng_below(10);
		if (op < 3 && r->ns + 10 < MAXM) {
			/* new mail: EXISTS, then learn, then decide (sometimes with an expunge of a new one between) */
			unsigned k = 1 + unit_rng_below(4);
			uint32_t before = (uint32_t)r->ns;
			struct uidset nu, nm;
			uidset_init(&nu);
			uidset_init(&nm);
			for (unsigned i = 0; i < k; i++) {
				uint32_t u = r->next_uid++;
				bool m = unit_rng_below(2);
				r->store[r->ns] = u;
				r->match[r->ns++] = m;
				uidset_add(&nu, u);
				if (m)
					uidset_add(&nm, u);
			}
			CU_ASSERT_FATAL(fview_store_exists(v, (uint32_t)r->ns));
			CU_ASSERT_EQUAL(fview_unknown(v), k);
			if (unit_rng_below(4) == 0) {
				/* an unknown one is expunged before its UID is learnt: the search then misses it */
				uint32_t idx = before + unit_rng_below(k);
				CU_ASSERT_FATAL(fview_store_expunge(v, idx + 1));
				uidset_remove(&nu, r->store[idx]);
				uidset_remove(&nm, r->store[idx]);
				memmove(&r->store[idx], &r->store[idx + 1], (r->ns - idx - 1) * sizeof(uint32_t));
				memmove(&r->match[idx], &r->match[idx + 1], (r->ns - idx - 1) * sizeof(bool));
				r->ns--;
			}
			CU_ASSERT_EQUAL_FATAL(fview_learn(v, &nu), 0);
			if (nu.count)
				CU_ASSERT_EQUAL(fview_undecided(v), nu.count);
			fview_decide(v, &nm, UINT32_MAX);
			uidset_free(&nu);
			uidset_free(&nm);
		} else if (op < 5 && r->ns) {
			/* the store expunges a message */
			uint32_t idx = unit_rng_below((uint32_t)r->ns);
			CU_ASSERT_FATAL(fview_store_expunge(v, idx + 1));
			memmove(&r->store[idx], &r->store[idx + 1], (r->ns - idx - 1) * sizeof(uint32_t));
			memmove(&r->match[idx], &r->match[idx + 1], (r->ns - idx - 1) * sizeof(bool));
			r->ns--;
		} else if (op == 5 && r->nc) {
			/* ageing: a few told messages leave */
			struct uidset leave;
			uidset_init(&leave);
			for (unsigned i = 0; i < 1 + unit_rng_below(3); i++) {
				uint32_t u = r->client[unit_rng_below((uint32_t)r->nc)];
				for (size_t j = 0; j < r->ns; j++)
					if (r->store[j] == u)
						r->match[j] = false;
				uidset_add(&leave, u);
			}
			fview_age(v, &leave);
			uidset_free(&leave);
		} else if (op < 8) {
			/* flush removals: the client drops what is gone or no longer matches */
			buf_clear(&out);
			fview_flush_removals(v, &out);
			client_apply(r, &out, NULL, 0);
			bool all_in = true;
			for (size_t i = 0; i < r->nc && all_in && (!big || step % 97 == 0); i++) {
				bool m = false;
				all_in = ref_store_has(r, r->client[i], &m) && m;
			}
			CU_ASSERT_FATAL(all_in);
			CU_ASSERT(!fview_has_removals(v));
		} else {
			/* flush arrivals */
			buf_clear(&out);
			struct uidset got;
			uidset_init(&got);
			uint32_t ready = fview_arrivals_ready(v);
			uint32_t k = fview_flush_arrivals(v, &out, &got);
			CU_ASSERT_EQUAL(k, ready);
			CU_ASSERT_EQUAL(got.count, k);
			client_apply(r, &out, got.uids, got.count);
			uidset_free(&got);
			/* every matching store message above the last told one is now told */
			uint32_t last = r->nc ? r->client[r->nc - 1] : 0;
			bool none_left = true;
			for (size_t i = 0; i < r->ns; i++)
				none_left = none_left && !(r->match[i] && r->store[i] > last);
			CU_ASSERT(none_left);
		}
		/* Zombies are still in the client's numbering until flushed: the
		 * reference client keeps them too, so the check holds at every step. */
		if (!big || step % 97 == 0)
			check_consistent(v, r);
	}
	/* at the end, after both flushes, the client's view is exactly the matching store messages */
	buf_clear(&out);
	fview_flush_removals(v, &out);
	client_apply(r, &out, NULL, 0);
	buf_clear(&out);
	struct uidset got;
	uidset_init(&got);
	fview_flush_arrivals(v, &out, &got);
	client_apply(r, &out, got.uids, got.count);
	uidset_free(&got);
	size_t k = 0;
	bool same = true;
	for (size_t i = 0; i < r->ns && same; i++)
		if (r->match[i]) {
			same = k < r->nc && r->client[k] == r->store[i];
			k++;
		}
	CU_ASSERT(same && k == r->nc);
	check_consistent(v, r);
	buf_free(&out);
	uidset_free(&all);
	uidset_free(&match);
	fview_free(v);
	free(r);
}

static void test_model_small(void)
{
	for (uint32_t seed = 1; seed <= 60; seed++)
		model_run(seed * 7919u, 400, false);
}

/* Enough expunges to compact several times. */
static void test_model_compaction(void)
{
	model_run(424242u, 12000, true);
}

static void test_sets(void)
{
	struct fview *v = fview_new();
	struct uidset all, match, got;
	uidset_init(&all);
	uidset_init(&match);
	uidset_init(&got);
	/* store 10..19; view: 11, 13, 15, 17 */
	for (uint32_t u = 10; u < 20; u++) {
		uidset_add(&all, u);
		if (u % 2)
			uidset_add(&match, u);
	}
	uidset_add(&match, 99); /* not in the store: ignored */
	fview_load(v, &all, &match);
	CU_ASSERT_EQUAL(fview_count(v), 5);
	char err[128];
	CU_ASSERT_EQUAL(fview_seqset(v, "2:*", 3, &got, err, sizeof(err)), 0);
	CU_ASSERT(got.count == 4 && got.uids[0] == 13 && got.uids[3] == 19);
	uidset_clear(&got);
	CU_ASSERT_EQUAL(fview_seqset(v, "9:*", 3, &got, err, sizeof(err)), 0); /* clamped: the last one */
	CU_ASSERT(got.count == 1 && got.uids[0] == 19);
	uidset_clear(&got);
	CU_ASSERT_EQUAL(fview_seqset(v, "6", 1, &got, err, sizeof(err)), -1);
	CU_ASSERT(strstr(err, "shows 5 messages") != NULL);
	CU_ASSERT_EQUAL(fview_seqset(v, "0", 1, &got, err, sizeof(err)), -1);
	CU_ASSERT_EQUAL(fview_seqset(v, "1:", 2, &got, err, sizeof(err)), -1);
	CU_ASSERT_EQUAL(fview_seqset(v, "a", 1, &got, err, sizeof(err)), -1);
	CU_ASSERT_EQUAL(fview_seqset(v, "", 0, &got, err, sizeof(err)), -1);
	CU_ASSERT_EQUAL(fview_seqset(v, "4,1", 3, &got, err, sizeof(err)), 0);
	CU_ASSERT(got.count == 2 && got.uids[0] == 11 && got.uids[1] == 17);
	uidset_clear(&got);
	CU_ASSERT_EQUAL(fview_uidset(v, "1:4294967295", 12, &got, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(got.count, 5);
	uidset_clear(&got);
	CU_ASSERT_EQUAL(fview_uidset(v, "12,14:15,100:*", 14, &got, err, sizeof(err)), 0);
	CU_ASSERT(got.count == 2 && got.uids[0] == 15 && got.uids[1] == 19); /* 100:* = 19:100 */
	uidset_clear(&got);
	CU_ASSERT_EQUAL(fview_uidset(v, "4294967296", 10, &got, err, sizeof(err)), -1);
	/* keep_told */
	uidset_add(&got, 10);
	uidset_add(&got, 11);
	uidset_add(&got, 12);
	uidset_add(&got, 19);
	fview_keep_told(v, &got);
	CU_ASSERT(got.count == 2 && got.uids[0] == 11 && got.uids[1] == 19);
	uidset_clear(&got);
	/* an empty view: "*" names nothing */
	uidset_clear(&match);
	fview_load(v, &all, &match);
	CU_ASSERT_EQUAL(fview_seqset(v, "1:*", 3, &got, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(got.count, 0);
	CU_ASSERT_EQUAL(fview_uidset(v, "1:*", 3, &got, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(got.count, 0);
	CU_ASSERT_EQUAL(fview_seqset(v, "1", 1, &got, err, sizeof(err)), -1);
	uidset_free(&all);
	uidset_free(&match);
	uidset_free(&got);
	fview_free(v);
}

/* Parse one response line for the response helpers. */
static const struct imap_msg *parse_resp(struct imap_parser **p, const char *text)
{
	struct imap_limits lim = {65536, 65536, 64, 100000, 0};
	*p = imap_parser_new(IMAP_PARSE_RESPONSES, &lim);
	size_t used;
	CU_ASSERT_FATAL(imap_parser_feed(*p, (const uint8_t *)text, strlen(text), &used) == IMAP_PARSE_DONE);
	return imap_parser_msg(*p);
}

static void expect_render(struct fview *v, const char *in, int what, bool as_uids, const char *want)
{
	struct imap_parser *p;
	const struct imap_msg *m = parse_resp(&p, in);
	struct buf out;
	buf_init(&out, 0);
	if (what == 0)
		fview_render_sort(v, m, as_uids, &out);
	else if (what == 1)
		fview_render_thread(v, m, as_uids, &out);
	else
		fview_renumber(m, fview_fetch_seq(v, m), &out);
	char *s = buf_str(&out);
	CU_ASSERT_STRING_EQUAL(s, want);
	if (strcmp(s, want) != 0)
		fprintf(stderr, "\n%s -> %s (want %s)\n", in, s, want);
	free(s);
	buf_free(&out);
	imap_parser_free(p);
}

static void test_responses(void)
{
	struct fview *v = fview_new();
	struct uidset all, match;
	uidset_init(&all);
	uidset_init(&match);
	/* store: 2 3 4 5 6 7 8; view: 3 5 6 8 (seq 1..4) */
	for (uint32_t u = 2; u <= 8; u++)
		uidset_add(&all, u);
	uint32_t m[] = {3, 5, 6, 8};
	for (size_t i = 0; i < 4; i++)
		uidset_add(&match, m[i]);
	fview_load(v, &all, &match);
	expect_render(v, "* 4 FETCH (FLAGS (\\Seen) UID 5)\r\n", 2, false, "* 2 FETCH (FLAGS (\\Seen) UID 5)\r\n");
	expect_render(v, "* 5 FETCH (FLAGS ())\r\n", 2, false, "* 3 FETCH (FLAGS ())\r\n"); /* store 5 = UID 6 */
	struct imap_parser *p;
	const struct imap_msg *msg = parse_resp(&p, "* 3 FETCH (FLAGS ())\r\n"); /* UID 4: hidden */
	CU_ASSERT_EQUAL(fview_fetch_seq(v, msg), 0);
	imap_parser_free(p);
	expect_render(v, "* SORT 8 2 6 3\r\n", 0, false, "* SORT 4 3 1\r\n");
	expect_render(v, "* SORT 8 2 6 3\r\n", 0, true, "* SORT 8 6 3\r\n");
	expect_render(v, "* SORT\r\n", 0, true, "* SORT\r\n");
	/* 2 hidden at the root: its children 3 and (5 ...) move up */
	expect_render(v, "* THREAD (2 3 (4 5)(6))(7)(8 (4)(2))\r\n", 1, true, "* THREAD (3 (5)(6))(8)\r\n");
	expect_render(v, "* THREAD (2 3 (4 5)(6))(7)(8 (4)(2))\r\n", 1, false, "* THREAD (1 (2)(3))(4)\r\n");
	expect_render(v, "* THREAD (2 (4)(7))\r\n", 1, true, "* THREAD\r\n");
	expect_render(v, "* THREAD ((3)(5))\r\n", 1, true, "* THREAD ((3)(5))\r\n");
	expect_render(v, "* THREAD (4 (3 7)(7 5))\r\n", 1, true, "* THREAD ((3)(5))\r\n");
	uidset_free(&all);
	uidset_free(&match);
	fview_free(v);
}

static void test_inconsistent_store(void)
{
	struct fview *v = fview_new();
	struct uidset all, match, nu;
	uidset_init(&all);
	uidset_init(&match);
	uidset_init(&nu);
	uidset_add(&all, 5);
	uidset_add(&all, 6);
	fview_load(v, &all, &match);
	CU_ASSERT(!fview_store_exists(v, 1));
	CU_ASSERT(!fview_store_expunge(v, 3));
	CU_ASSERT(!fview_store_expunge(v, 0));
	CU_ASSERT(fview_store_exists(v, 3));
	uidset_add(&nu, 6); /* not above the highest UID */
	CU_ASSERT_EQUAL(fview_learn(v, &nu), -1);
	uidset_clear(&nu);
	uidset_add(&nu, 9);
	uidset_add(&nu, 10); /* one too many */
	CU_ASSERT_EQUAL(fview_learn(v, &nu), -1);
	CU_ASSERT_EQUAL(fview_unknown(v), 1);
	CU_ASSERT(fview_memory(v) > 0);
	uidset_free(&all);
	uidset_free(&match);
	uidset_free(&nu);
	fview_free(v);
}

/* 100,000 messages, a 1% view: lookups and changes stay cheap (a loose bound). */
static void test_large(void)
{
	struct fview *v = fview_new();
	struct uidset all, match;
	uidset_init(&all);
	uidset_init(&match);
	for (uint32_t u = 1; u <= 100000; u++) {
		uidset_add(&all, u);
		if (u % 100 == 0)
			uidset_add(&match, u);
	}
	fview_load(v, &all, &match);
	CU_ASSERT_EQUAL(fview_count(v), 1000);
	CU_ASSERT(fview_memory(v) < 3 * 1024 * 1024);
	bool ok = true;
	for (uint32_t i = 0; i < 20000; i++)
		ok = ok && fview_store_expunge(v, 1); /* 20,000 from the front: compactions */
	CU_ASSERT_FATAL(ok);
	CU_ASSERT_EQUAL(fview_store_count(v), 80000);
	CU_ASSERT_EQUAL(fview_store_uid(v, 1), 20001);
	CU_ASSERT(fview_has_removals(v));
	struct buf out;
	buf_init(&out, 0);
	fview_flush_removals(v, &out);
	CU_ASSERT_EQUAL(fview_count(v), 800);
	CU_ASSERT_EQUAL(fview_uid_at(v, 1), 20100);
	buf_free(&out);
	uidset_free(&all);
	uidset_free(&match);
	fview_free(v);
}

void suite_fview(void)
{
	ADD_SUITE("fview",
	          {"model: random events against a reference", test_model_small},
	          {"model: thousands of expunges (compaction)", test_model_compaction},
	          {"sequence and UID sets", test_sets},
	          {"FETCH, SORT and THREAD responses", test_responses},
	          {"an inconsistent store is reported, not followed", test_inconsistent_store},
	          {"100,000 messages", test_large});
}
