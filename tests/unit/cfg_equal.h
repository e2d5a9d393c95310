/*
 * cfg_equal.h - is one key's value the same in two config structs?
 * Shared by the unit tests (test_cfg.c) and the config fuzz target
 * (fuzz_cfg.c), which compare configs field by field through a key table.
 */
#ifndef PIMAP_TESTS_CFG_EQUAL_H
#define PIMAP_TESTS_CFG_EQUAL_H

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "cfg.h"

/*
 * A NULL string or list equals an empty one. Durations are equal exactly,
 * or with as_dumped to the precision --dump-config prints (milliseconds).
 */
static inline bool cfg_value_equal(const struct cfg_key *k, const void *a, const void *b,
                                   bool as_dumped)
{
	const void *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;

	switch (k->type) {
	case CFG_STRING: {
		const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;

		return strcmp(sa ? sa : "", sb ? sb : "") == 0;
	}
	case CFG_STRLIST: {
		char *const *la = *(char **const *)fa, *const *lb = *(char **const *)fb;

		for (; la && *la; la++, lb++)
			if (!lb || !*lb || strcmp(*la, *lb) != 0)
				return false;
		return !lb || !*lb;
	}
	case CFG_BOOL:
		return *(const bool *)fa == *(const bool *)fb;
	case CFG_INT:
		return *(const long long *)fa == *(const long long *)fb;
	case CFG_SIZE:
		return *(const size_t *)fa == *(const size_t *)fb;
	case CFG_DURATION: {
		double da = *(const double *)fa, db = *(const double *)fb;

		if (!as_dumped)
			return da == db;
		return fabs(da - db) <= 0.0005 + fabs(da) * 1e-9;
	}
	case CFG_ENUM:
		return *(const int *)fa == *(const int *)fb;
	}
	return false;
}

#endif
