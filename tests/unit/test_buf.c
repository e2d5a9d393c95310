/* Unit tests for buf.c: the byte queue under every stream. */
#include <stdlib.h>
#include <string.h>
#include <CUnit/CUnit.h>

#include "buf.h"
#include "suites.h"

static void test_append_consume(void)
{
	struct buf b;
	buf_init(&b, 0);
	CU_ASSERT_EQUAL(buf_len(&b), 0);
	buf_append_str(&b, "hello ");
	buf_append(&b, "world", 5);
	CU_ASSERT_EQUAL(buf_len(&b), 11);
	CU_ASSERT_EQUAL(memcmp(buf_head(&b), "hello world", 11), 0);
	buf_consume(&b, 6);
	CU_ASSERT_EQUAL(buf_len(&b), 5);
	CU_ASSERT_EQUAL(memcmp(buf_head(&b), "world", 5), 0);
	buf_consume(&b, 100); /* over-consume empties */
	CU_ASSERT_EQUAL(buf_len(&b), 0);
	buf_free(&b);
}

static void test_growth_keeps_content(void)
{
	struct buf b;
	buf_init(&b, 0);
	for (int i = 0; i < 100000; i++) {
		unsigned char c = (unsigned char)(i * 7);
		buf_append(&b, &c, 1);
		if (i % 3 == 0)
			buf_consume(&b, 1);
	}
	/* 100000 appended, 33334 consumed: the rest are in order. */
	CU_ASSERT_EQUAL(buf_len(&b), 100000 - 33334);
	const unsigned char *p = buf_head(&b);
	int ok = 1;
	for (size_t k = 0; k < buf_len(&b); k++)
		if (p[k] != (unsigned char)((k + 33334) * 7))
			ok = 0;
	CU_ASSERT_TRUE(ok);
	buf_free(&b);
}

static void test_reserve_commit(void)
{
	struct buf b;
	buf_init(&b, 0);
	uint8_t *w = buf_reserve(&b, 4096);
	memset(w, 'x', 4096);
	buf_commit(&b, 10);
	CU_ASSERT_EQUAL(buf_len(&b), 10);
	buf_consume(&b, 5);
	w = buf_reserve(&b, 3);
	memcpy(w, "abc", 3);
	buf_commit(&b, 3);
	CU_ASSERT_EQUAL(memcmp(buf_head(&b), "xxxxxabc", 8), 0);
	buf_free(&b);
}

static void test_limit_and_room(void)
{
	struct buf b;
	buf_init(&b, 10);
	CU_ASSERT_EQUAL(buf_room(&b), 10);
	CU_ASSERT_FALSE(buf_full(&b));
	buf_append(&b, "0123456789AB", 12); /* may exceed: the owner decides */
	CU_ASSERT_TRUE(buf_full(&b));
	CU_ASSERT_EQUAL(buf_room(&b), 0);
	buf_consume(&b, 5);
	CU_ASSERT_FALSE(buf_full(&b));
	CU_ASSERT_EQUAL(buf_room(&b), 3);
	buf_free(&b);

	buf_init(&b, 0);
	CU_ASSERT_EQUAL(buf_room(&b), SIZE_MAX);
	buf_free(&b);
}

static void test_printf_and_find(void)
{
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "%s %d\r\n", "a1 OK", 42);
	char big[600];
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	buf_printf(&b, "%s\n", big); /* longer than the small stack buffer */
	CU_ASSERT_EQUAL(buf_len(&b), 10 + 600);
	CU_ASSERT_EQUAL(buf_find_lf(&b, 0), 9);
	CU_ASSERT_EQUAL(buf_find_lf(&b, 10), 10 + 599);
	CU_ASSERT_EQUAL(buf_find_lf(&b, 610), -1);
	buf_clear(&b);
	CU_ASSERT_EQUAL(buf_find_lf(&b, 0), -1);
	buf_free(&b);
}

/* An unused buffer's head is a valid empty string, never NULL + 0 (UB that
 * clang's UBSan reports; fuzz_roundtrip: corpus/roundtrip/regress-empty-uidset-null-head). */
static void test_unused_head(void)
{
	struct buf b;
	buf_init(&b, 0);
	CU_ASSERT_PTR_NOT_NULL(buf_head(&b));
	CU_ASSERT_EQUAL(buf_len(&b), 0);
	uint8_t *p = buf_reserve(&b, 0);
	CU_ASSERT_PTR_NOT_NULL(p);
	buf_clear(&b);
	CU_ASSERT_PTR_NOT_NULL(buf_head(&b));
	buf_free(&b);
	CU_ASSERT_PTR_NOT_NULL(buf_head(&b));
}

/* xstrndup copies exactly n bytes, NULs and all, and ends the copy with one. */
static void test_xstrndup(void)
{
	char *p = xstrndup("user\0secret", 4);
	CU_ASSERT_STRING_EQUAL(p, "user");
	free(p);
	p = xstrndup("abc", 0);
	CU_ASSERT_STRING_EQUAL(p, "");
	free(p);
	char raw[3] = {'x', 'y', 'z'}; /* not NUL-terminated */
	p = xstrndup(raw, 3);
	CU_ASSERT_STRING_EQUAL(p, "xyz");
	free(p);
}

void suite_buf(void)
{
	ADD_SUITE("buf",
	          {"append and consume", test_append_consume},
	          {"growth keeps content in order", test_growth_keeps_content},
	          {"reserve and commit", test_reserve_commit},
	          {"limit and room", test_limit_and_room},
	          {"printf and find LF", test_printf_and_find},
	          {"an unused buffer's head", test_unused_head},
	          {"xstrndup", test_xstrndup});
}
