/* Helpers shared by the unit suites (declared in suites.h). */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "suites.h"

char *buf_str(const struct buf *b)
{
	char *s = malloc(buf_len(b) + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	if (buf_len(b))
		memcpy(s, buf_head(b), buf_len(b));
	s[buf_len(b)] = '\0';
	return s;
}
