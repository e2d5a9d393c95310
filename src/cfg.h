/*
 * cfg.h - configuration from one descriptor table, loaded from YAML.
 *
 * Each daemon declares a table of struct cfg_key describing its config struct
 * (name, type, offset, default, bounds). The loader walks a YAML document
 * (libyaml) against the table: nested mappings flatten into dotted names
 * ("limits:\n  max_line_length: 64K" sets "limits.max_line_length").
 * Errors name file:line:column. Command-line flags go through cfg_set() so
 * they are validated exactly like the file.
 */
#ifndef PIMAP_CFG_H
#define PIMAP_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <yaml.h>

enum cfg_type {
	CFG_STRING,   /* char *, malloc'd, owned by the config struct; "" allowed */
	CFG_STRLIST,  /* char **, NULL-terminated; YAML sequence or a single scalar */
	CFG_BOOL,     /* bool: true/false/yes/no/on/off */
	CFG_INT,      /* long long, within [min, max] */
	CFG_SIZE,     /* size_t: "65536", "64K", "1M", "2G" (binary units), within [min, max] */
	CFG_DURATION, /* double seconds: "30", "30s", "250ms", "5m", "1h", within [min, max] seconds */
	CFG_ENUM,     /* int: index into enum_values (case-insensitive match) */
};

struct cfg_key {
	const char         *name;          /* dotted path, e.g. "limits.max_line_length" */
	enum cfg_type       type;
	size_t              offset;        /* offsetof(struct X_config, field) */
	const char         *default_value; /* as written in YAML; for STRLIST, comma-separated ("" = empty list) */
	double              min, max;      /* bounds for INT, SIZE, DURATION; ignored otherwise */
	const char *const  *enum_values;   /* CFG_ENUM: NULL-terminated list */
	bool                reloadable;    /* may change on SIGHUP without restart */
	const char         *help;          /* one line, for --help and the dump */
	/* Optional, STRING and STRLIST (each item): syntax the type cannot
	 * express (a URL, an address). Returns 0, or -1 with the problem in msg.
	 * Errors then carry the value's file:line:column like any other. */
	int               (*validate)(const char *value, char *msg, size_t msglen);
};
/* A table ends with an entry whose name is NULL. */

struct cfg_error {
	char file[256];    /* path, or "command line" for cfg_set() */
	int  line, column; /* 1-based; 0 when unknown */
	char message[256];
};

/* Set every field to its default. Frees nothing: call on a zeroed struct. Returns 0, or -1 (bad default, a bug) with err filled. */
int cfg_init_defaults(const struct cfg_key *table, void *config, struct cfg_error *err);

/*
 * Load a YAML file over the values already in config (call cfg_init_defaults
 * first). Unknown keys, wrong types, out-of-bound values, duplicate keys and
 * YAML syntax errors are errors with a position. Returns 0 or -1. On error
 * config may be partly updated: load into a fresh struct and swap on success.
 */
int cfg_load_file(const struct cfg_key *table, void *config, const char *path, struct cfg_error *err);

/* Same, from a string; `name` is used as the file name in errors. */
int cfg_load_string(const struct cfg_key *table, void *config, const char *yaml, size_t len,
                    const char *name, struct cfg_error *err);

/* Set one key from a string (a command-line flag). Returns 0 or -1. */
int cfg_set(const struct cfg_key *table, void *config, const char *key, const char *value,
            struct cfg_error *err);

/* Look up a key descriptor by name, or NULL. */
const struct cfg_key *cfg_find(const struct cfg_key *table, const char *key);

/* Free every STRING and STRLIST in config and zero them. */
void cfg_free(const struct cfg_key *table, void *config);

/* Write the effective configuration as YAML (nested mappings), with help comments. */
void cfg_dump(const struct cfg_key *table, const void *config, FILE *out);

/*
 * A libyaml parser failure as err ("YAML syntax error: ..." at the line and
 * column of the problem). buf/len: the document, for reader errors, which
 * carry a byte offset instead of a position. For other YAML loaders
 * (macros.c) that report errors the same way.
 */
void cfg_yaml_error(const yaml_parser_t *p, const char *name, const char *buf, size_t len, struct cfg_error *err);
/* An unquoted empty value, "~" or "null": YAML's spellings of nothing. */
bool cfg_yaml_scalar_is_null(const yaml_node_t *node);
/* "a mapping", "a sequence" or "a scalar", for error messages. */
const char *cfg_yaml_node_kind(const yaml_node_t *node);

/* "file:line:column: message" (or "file: message" without a position) into buf. */
void cfg_format_error(const struct cfg_error *err, char *buf, size_t len);

#endif
