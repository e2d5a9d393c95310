/*
 * fuzz.h - what the libFuzzer targets in tests/fuzz/ share.
 *
 * Each target defines LLVMFuzzerTestOneInput(). Built with --enable-fuzzing
 * (clang, -fsanitize=fuzzer) it is a libFuzzer binary; otherwise it is linked
 * with standalone_main.c and replays the corpus files given on its command
 * line (make check runs every corpus and regression input that way).
 *
 * A target checks properties, not only "no crash": a failed FUZZ_CHECK
 * prints the condition and traps, which both drivers report as a crash.
 */
#ifndef PIMAP_FUZZ_H
#define PIMAP_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                         \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			__builtin_trap();                                                        \
		}                                                                                \
	} while (0)

/* Limits small enough that the fuzzer reaches every limit error quickly. */
static const struct imap_limits fuzz_small_limits = {
	.max_line_length = 64,
	.max_literal_size = 32,
	.max_list_depth = 4,
	.max_args = 16,
};

/* A small deterministic generator (seeded from the input) for chunk sizes and choices. */
static inline uint32_t fuzz_rand(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	return *state >> 16;
}

/*
 * The next chunk of left bytes to feed a parser: all of it with a zero
 * state (one piece), otherwise mostly 1-5 bytes and sometimes up to 300, so
 * that both byte-at-a-time and bulk paths get split.
 */
static inline size_t fuzz_chunk(uint32_t *state, size_t left)
{
	if (!*state)
		return left;
	uint32_t x = fuzz_rand(state);
	size_t n = (x & 7) == 0 ? (x >> 3) % 300 + 1 : (x >> 3) % 5 + 1;
	return n < left ? n : left;
}

/* A cursor over the fuzzer's bytes, for targets that need several inputs. */
struct fuzz_in {
	const uint8_t *p;
	size_t         n;
};

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | fuzz_u8(in);
	return v;
}

/*
 * The next piece of input up to a NUL byte (or the end), which is consumed:
 * several strings in one input. Returns a malloc'd NUL-terminated copy.
 */
static inline char *fuzz_cstr(struct fuzz_in *in, size_t *len_out)
{
	const uint8_t *nul = memchr(in->p, '\0', in->n);
	size_t len = nul ? (size_t)(nul - in->p) : in->n;
	char *s = malloc(len + 1);
	FUZZ_CHECK(s != NULL);
	if (len)
		memcpy(s, in->p, len);
	s[len] = '\0';
	in->p += len + (nul ? 1 : 0);
	in->n -= len + (nul ? 1 : 0);
	if (len_out)
		*len_out = len;
	return s;
}

/*
 * Parse exactly one message of text[0..len) with a fresh parser (default
 * limits). Returns the parser (the message is imap_parser_msg()) when the
 * whole text is one message; NULL (parser freed) otherwise.
 */
static inline struct imap_parser *fuzz_parse_whole(enum imap_parser_mode mode, const void *text, size_t len)
{
	struct imap_parser *p = imap_parser_new(mode, NULL);
	size_t used = 0;
	FUZZ_CHECK(p != NULL);
	if (imap_parser_feed(p, text, len, &used) != IMAP_PARSE_DONE || used != len) {
		imap_parser_free(p);
		return NULL;
	}
	return p;
}

/* Deep comparison of two argument lists; literal kinds are compared only when exact_kinds. */
static inline bool fuzz_args_equal(const struct imap_arg *a, size_t na, const struct imap_arg *b, size_t nb,
                                   bool exact_kinds)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		if (a[i].type != b[i].type)
			return false;
		if (a[i].type == IMAP_ARG_LIST) {
			if (!fuzz_args_equal(a[i].list, a[i].list_count, b[i].list, b[i].list_count, exact_kinds))
				return false;
			continue;
		}
		if (a[i].len != b[i].len || memcmp(a[i].str, b[i].str, a[i].len) != 0)
			return false;
		if (a[i].type == IMAP_ARG_LITERAL) {
			bool bin_a = a[i].lit_kind == IMAP_LITERAL_BINARY, bin_b = b[i].lit_kind == IMAP_LITERAL_BINARY;
			if (bin_a != bin_b || (exact_kinds && a[i].lit_kind != b[i].lit_kind))
				return false;
		}
	}
	return true;
}

/* Append the bytes of a buffer plus a NUL, for string functions; the NUL is not counted. */
static inline const char *fuzz_buf_cstr(struct buf *b)
{
	buf_append(b, "", 1);
	b->end--;
	return (const char *)buf_head(b);
}

#endif
