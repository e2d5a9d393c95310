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

/* ---- helpers for the other YAML loaders (macros.c, filters.c) ------------- */

/* Fill err (line and column 1-based; 0 when unknown). */
void cfg_set_error(struct cfg_error *err, const char *file, int line, int column, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* A size with the config's units ("1048576", "64K", "1M", "2G"): 0, -1 (bad) or 1 (too large). */
int cfg_parse_size(const char *s, size_t *out);
/*
 * Read a whole file of at most max bytes into *data (malloc'd, not
 * NUL-terminated). Returns 0, or -1 with err ("what" says what the file
 * should have been, for the message about a file that is too large).
 */
int cfg_read_file(const char *path, size_t max, const char *what, char **data, size_t *len, struct cfg_error *err);

/* One YAML document being walked by a loader. */
struct cfg_yaml {
	yaml_document_t  *doc;
	const char       *name; /* file name for errors */
	struct cfg_error *err;
};
typedef int (*cfg_yaml_root_fn)(struct cfg_yaml *y, yaml_node_t *root, void *ctx);
/*
 * Parse text as exactly one YAML document (a second one is an error) and
 * call fn with its root (NULL for an empty document). Returns fn's result,
 * or -1 with err for a YAML error.
 */
int cfg_yaml_load(const char *name, const char *text, size_t len, cfg_yaml_root_fn fn, void *ctx,
                  struct cfg_error *err);
yaml_node_t *cfg_yaml_node(struct cfg_yaml *y, int id);
/* err at node's position. */
void cfg_yaml_node_error(struct cfg_yaml *y, const yaml_node_t *node, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A string scalar for `what`; empty or null refused unless allow_empty. NULL (err set) if not. */
const char *cfg_yaml_string(struct cfg_yaml *y, yaml_node_t *val, const char *what, bool allow_empty);
/*
 * Sort a mapping's pairs by key: vals[i] is the value of keys[i] (NULL if
 * absent), knodes[i] its key node. Unknown and duplicate keys are errors
 * (`where` ends the unknown-key message). Returns 0 or -1.
 */
int cfg_yaml_map_slots(struct cfg_yaml *y, yaml_node_t *map, const char *const *keys, yaml_node_t **knodes,
                       yaml_node_t **vals, const char *where);
/* s (len bytes) for a message: control bytes as '?', cut at 60 with "..." (out: 64 bytes). */
const char *cfg_echo(char out[64], const char *s, size_t len);

#endif
