/* Helpers shared by the unit suites (declared in suites.h). */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "suites.h"

/* Deterministic xorshift32: the same cases on every run and every libc. */
static uint32_t unit_rng_state = 1;

void unit_rng_seed(uint32_t seed)
{
	unit_rng_state = seed ? seed : 1;
}

uint32_t unit_rng_next(void)
{
	uint32_t x = unit_rng_state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	unit_rng_state = x;
	return x;
}

uint32_t unit_rng_below(uint32_t n)
{
	return n ? unit_rng_next() % n : 0;
}

char *buf_str(const struct buf *b)
{
	char *s = malloc(buf_len(b) + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	if (buf_len(b))
		memcpy(s, buf_head(b), buf_len(b));
	s[buf_len(b)] = '\0';
	return s;
}
