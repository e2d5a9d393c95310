/*
 * fuzz_cfg.c - libFuzzer target for the YAML configuration loader (cfg.c)
 * with both daemons' key tables (proxy_config.c, gateway_config.c) and
 * their validators (URLs, listen addresses).
 *
 * Bit 0 of the first byte picks the table; the rest is the YAML file.
 * Checks:
 *  - a refused file has an error message, and its position, when it has
 *    one, lies inside the document (line 1..lines+1);
 *  - an accepted file round-trips: what --dump-config writes (cfg_dump)
 *    loads again without error, into the same values (durations to the
 *    precision the dump prints), and dumps to the same text;
 *  - nothing leaks (cfg_free frees every string and list; LeakSanitizer).
 *
 * Corpus: tests/fuzz/corpus/cfg (the shipped etc/pimap-proxy.yaml and etc/pimap-gateway.yaml, and the unit
 * tests' documents); dictionary tests/fuzz/cfg.dict.
 */
#include "config.h"

#include "cfg.h"
#include "../unit/cfg_equal.h"
#include "fuzz.h"
#include "gateway_config.h"
#include "proxy_config.h"

/* Big enough for either daemon's config struct. */
union any_config {
	struct proxy_config   proxy;
	struct gateway_config gateway;
};

static char *dump_text(const struct cfg_key *table, const void *config, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	FUZZ_CHECK(f != NULL);
	cfg_dump(table, config, f);
	FUZZ_CHECK(fclose(f) == 0);
	return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const struct cfg_key *table = (data[0] & 1) ? gateway_config_keys : proxy_config_keys;
	const char *yaml = (const char *)data + 1;
	size_t len = size - 1;

	union any_config cfg, again;
	struct cfg_error err;
	memset(&cfg, 0, sizeof(cfg));
	memset(&again, 0, sizeof(again));
	memset(&err, 0, sizeof(err));
	FUZZ_CHECK(cfg_init_defaults(table, &cfg, &err) == 0);
	if (cfg_load_string(table, &cfg, yaml, len, "fuzz.yaml", &err) < 0) {
		FUZZ_CHECK(err.message[0] != '\0');
		FUZZ_CHECK(err.line >= 0 && err.column >= 0);
		if (err.line > 0) {
			size_t lines = 1;
			/* YAML breaks lines at LF, CR and CRLF alike. */
			for (size_t i = 0; i < len; i++)
				lines += yaml[i] == '\n' || (yaml[i] == '\r' && (i + 1 == len || yaml[i + 1] != '\n'));
			FUZZ_CHECK((size_t)err.line <= lines + 1);
		}
		char text[600];
		cfg_format_error(&err, text, sizeof(text));
		FUZZ_CHECK(strncmp(text, "fuzz.yaml", 9) == 0);
		cfg_free(table, &cfg);
		return 0;
	}

	size_t dlen = 0, dlen2 = 0;
	char *dump = dump_text(table, &cfg, &dlen);
	FUZZ_CHECK(cfg_init_defaults(table, &again, &err) == 0);
	if (cfg_load_string(table, &again, dump, dlen, "dump.yaml", &err) < 0) {
		char text[600];
		cfg_format_error(&err, text, sizeof(text));
		fprintf(stderr, "the dump does not load: %s\n%s\n", text, dump);
		FUZZ_CHECK(!"dump reloads");
	}
	for (const struct cfg_key *k = table; k->name; k++) {
		if (!cfg_value_equal(k, &cfg, &again, true))
			fprintf(stderr, "%s changed through the dump\n", k->name);
		FUZZ_CHECK(cfg_value_equal(k, &cfg, &again, true));
	}
	char *dump2 = dump_text(table, &again, &dlen2);
	FUZZ_CHECK(dlen == dlen2 && memcmp(dump, dump2, dlen) == 0);
	free(dump);
	free(dump2);
	cfg_free(table, &cfg);
	cfg_free(table, &again);
	return 0;
}
