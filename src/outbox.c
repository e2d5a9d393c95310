/*
 * outbox.c - pimap-proxy's durable outbox (see outbox.h).
 *
 * File format: a header of "key value" lines, a blank line, the message:
 *
 *   pimap-outbox 1
 *   kind send|dsn
 *   user alice
 *   from alice@example.org
 *   rcpt bob@example.org            (one line per recipient)
 *   message-id <...>
 *   saveto Sent                     (optional)
 *   created 1765000000.250
 *
 * No value may hold CR or LF (addresses, Message-IDs and user names are
 * checked before they get here); outbox_format refuses nothing but
 * outbox_add does.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>

#include "outbox.h"

#define OUTBOX_MAGIC "pimap-outbox 1"
#define OUTBOX_TMP "tmp"
#define OUTBOX_LOCK "lock"

struct outbox {
	char  *dir;
	int    dirfd;
	int    tmpfd;
	int    lockfd;
	size_t max_bytes;
};

void outbox_entry_init(struct outbox_entry *e)
{
	memset(e, 0, sizeof(*e));
	buf_init(&e->msg, 0);
}

void outbox_entry_free(struct outbox_entry *e)
{
	free(e->user);
	free(e->from);
	for (size_t i = 0; i < e->nrcpts; i++)
		free(e->rcpts[i]);
	free(e->rcpts);
	free(e->message_id);
	free(e->saveto);
	buf_free(&e->msg);
	memset(e, 0, sizeof(*e));
}

/* ------------------------------------------------------------------------ */
/* format                                                                    */

void outbox_format(const struct outbox_entry *e, struct buf *out)
{
	buf_printf(out, "%s\nkind %s\nuser %s\nfrom %s\n", OUTBOX_MAGIC, e->kind == OUTBOX_DSN ? "dsn" : "send",
	           e->user ? e->user : "", e->from ? e->from : "");
	for (size_t i = 0; i < e->nrcpts; i++)
		buf_printf(out, "rcpt %s\n", e->rcpts[i]);
	buf_printf(out, "message-id %s\n", e->message_id ? e->message_id : "");
	if (e->saveto)
		buf_printf(out, "saveto %s\n", e->saveto);
	buf_printf(out, "created %.3f\n\n", e->created);
	buf_append(out, buf_head(&e->msg), buf_len(&e->msg));
}

static bool clean_value(const char *s)
{
	return !s || (!strchr(s, '\n') && !strchr(s, '\r'));
}

static char *dup_n(const char *s, size_t n)
{
	char *d = xmalloc(n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

int outbox_parse(const uint8_t *data, size_t len, struct outbox_entry *e, char *err, size_t errlen)
{
	const char *p = (const char *)data, *end = p + len;
	bool magic = false, have_kind = false, have_user = false;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		size_t n = (size_t)(nl - p);
		if (n == 0) {
			p = nl + 1;
			if (!magic || !have_kind || !have_user || e->nrcpts == 0) {
				snprintf(err, errlen, "incomplete outbox entry header");
				return -1;
			}
			buf_append(&e->msg, p, (size_t)(end - p));
			return 0;
		}
		if (!magic) {
			if (n != strlen(OUTBOX_MAGIC) || memcmp(p, OUTBOX_MAGIC, n) != 0) {
				snprintf(err, errlen, "not an outbox entry");
				return -1;
			}
			magic = true;
			p = nl + 1;
			continue;
		}
		const char *sp = memchr(p, ' ', n);
		size_t kl = sp ? (size_t)(sp - p) : n;
		const char *v = sp ? sp + 1 : nl;
		size_t vl = (size_t)(nl - v);
#define KEY(k) (kl == strlen(k) && memcmp(p, k, kl) == 0)
		if (KEY("kind")) {
			have_kind = true;
			if (vl == 4 && memcmp(v, "send", 4) == 0)
				e->kind = OUTBOX_SEND;
			else if (vl == 3 && memcmp(v, "dsn", 3) == 0)
				e->kind = OUTBOX_DSN;
			else
				have_kind = false;
		} else if (KEY("user")) {
			free(e->user);
			e->user = dup_n(v, vl);
			have_user = vl > 0;
		} else if (KEY("from")) {
			free(e->from);
			e->from = dup_n(v, vl);
		} else if (KEY("rcpt")) {
			if (e->nrcpts >= OUTBOX_MAX_RCPTS) {
				snprintf(err, errlen, "too many recipients in an outbox entry");
				return -1;
			}
			e->rcpts = xrealloc(e->rcpts, (e->nrcpts + 1) * sizeof(*e->rcpts));
			e->rcpts[e->nrcpts++] = dup_n(v, vl);
		} else if (KEY("message-id")) {
			free(e->message_id);
			e->message_id = dup_n(v, vl);
		} else if (KEY("saveto")) {
			free(e->saveto);
			e->saveto = dup_n(v, vl);
		} else if (KEY("created")) {
			char tmp[64];
			snprintf(tmp, sizeof(tmp), "%.*s", (int)(vl < 60 ? vl : 60), v);
			e->created = strtod(tmp, NULL);
		}
		/* Unknown keys are skipped: a newer proxy may add some. */
#undef KEY
		p = nl + 1;
	}
	snprintf(err, errlen, "outbox entry without a message");
	return -1;
}

/* ------------------------------------------------------------------------ */
/* files                                                                     */

static bool valid_name(const char *n)
{
	size_t l = strlen(n);
	if (l != 34 || n[16] != '-' || n[25] != '-')
		return false;
	for (size_t i = 0; i < l; i++)
		if (i != 16 && i != 25 && !((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
			return false;
	return true;
}

static void new_name(char *out)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint32_t r;
	gnutls_rnd(GNUTLS_RND_NONCE, &r, sizeof(r));
	snprintf(out, OUTBOX_NAME_MAX + 1, "%016llx-%08x-%08x",
	         (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)(ts.tv_nsec / 1000),
	         (unsigned)getpid(), r);
}

static int mkdir_private(const char *path, char *err, size_t errlen)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

struct outbox *outbox_open(const char *state_dir, size_t max_bytes, bool *busy, char *err, size_t errlen)
{
	*busy = false;
	struct outbox *ob = xcalloc(1, sizeof(*ob));
	ob->dirfd = ob->tmpfd = ob->lockfd = -1;
	ob->max_bytes = max_bytes;
	size_t dl = strlen(state_dir) + sizeof(OUTBOX_DIR) + 2;
	ob->dir = xmalloc(dl);
	snprintf(ob->dir, dl, "%s/%s", state_dir, OUTBOX_DIR);
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s/%s", ob->dir, OUTBOX_TMP);
	if (mkdir_private(state_dir, err, errlen) < 0 || mkdir_private(ob->dir, err, errlen) < 0 ||
	    mkdir_private(tmp, err, errlen) < 0)
		goto fail;
	ob->dirfd = open(ob->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ob->tmpfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ob->lockfd = openat(ob->dirfd, OUTBOX_LOCK, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (ob->dirfd < 0 || ob->tmpfd < 0 || ob->lockfd < 0) {
		snprintf(err, errlen, "%s: %s", ob->dir, strerror(errno));
		goto fail;
	}
	if (flock(ob->lockfd, LOCK_EX | LOCK_NB) < 0) {
		*busy = errno == EWOULDBLOCK;
		snprintf(err, errlen, "%s: %s", ob->dir,
		         *busy ? "in use by another pimap-proxy process" : strerror(errno));
		goto fail;
	}
	/* Files in tmp/ were never acknowledged to a client: whoever wrote them died before the rename. */
	DIR *d = fdopendir(dup(ob->tmpfd));
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			if (de->d_name[0] != '.')
				unlinkat(ob->tmpfd, de->d_name, 0);
		closedir(d);
	}
	return ob;
fail:
	outbox_close(ob);
	return NULL;
}

void outbox_close(struct outbox *ob)
{
	if (!ob)
		return;
	if (ob->lockfd >= 0)
		close(ob->lockfd);
	if (ob->tmpfd >= 0)
		close(ob->tmpfd);
	if (ob->dirfd >= 0)
		close(ob->dirfd);
	free(ob->dir);
	free(ob);
}

void outbox_set_max(struct outbox *ob, size_t max_bytes)
{
	ob->max_bytes = max_bytes;
}

char **outbox_list(struct outbox *ob, size_t *n)
{
	*n = 0;
	char **names = NULL;
	size_t cap = 0;
	DIR *d = fdopendir(dup(ob->dirfd));
	if (!d)
		return NULL;
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!valid_name(de->d_name))
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			names = xrealloc(names, cap * sizeof(*names));
		}
		names[(*n)++] = xstrdup(de->d_name);
	}
	closedir(d);
	for (size_t i = 1; i < *n; i++) /* insertion sort: outboxes are short */
		for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			char *t = names[j];
			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	return names;
}

void outbox_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static size_t total_bytes(struct outbox *ob)
{
	size_t n, total = 0;
	char **names = outbox_list(ob, &n);
	for (size_t i = 0; i < n; i++) {
		struct stat sb;
		if (fstatat(ob->dirfd, names[i], &sb, AT_SYMLINK_NOFOLLOW) == 0)
			total += (size_t)sb.st_size;
	}
	outbox_names_free(names, n);
	return total;
}

size_t outbox_bytes(struct outbox *ob)
{
	return total_bytes(ob);
}

/* Write data to tmp/name, fsync, rename to name, fsync the directory. */
static int write_durably(struct outbox *ob, const char *name, const struct buf *data, char *err, size_t errlen)
{
	int fd = openat(ob->tmpfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s/%s/%s: %s", ob->dir, OUTBOX_TMP, name, strerror(errno));
		return -1;
	}
	const uint8_t *p = buf_head(data);
	size_t left = buf_len(data);
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(err, errlen, "writing %s/%s: %s", ob->dir, name, w < 0 ? strerror(errno) : "short write");
			goto fail;
		}
		p += w;
		left -= (size_t)w;
	}
	if (fsync(fd) < 0) {
		snprintf(err, errlen, "fsync %s/%s: %s", ob->dir, name, strerror(errno));
		goto fail;
	}
	close(fd);
	fd = -1;
	if (renameat(ob->tmpfd, name, ob->dirfd, name) < 0) {
		snprintf(err, errlen, "rename into %s: %s", ob->dir, strerror(errno));
		goto fail;
	}
	/* The rename is durable only once the directory is on disk. */
	if (fsync(ob->dirfd) < 0) {
		snprintf(err, errlen, "fsync %s: %s", ob->dir, strerror(errno));
		return -1;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(ob->tmpfd, name, 0);
	return -1;
}

static bool entry_clean(const struct outbox_entry *e)
{
	if (!clean_value(e->user) || !clean_value(e->from) || !clean_value(e->message_id) || !clean_value(e->saveto))
		return false;
	for (size_t i = 0; i < e->nrcpts; i++)
		if (!clean_value(e->rcpts[i]))
			return false;
	return e->user && *e->user && e->nrcpts > 0 && e->nrcpts <= OUTBOX_MAX_RCPTS;
}

int outbox_add(struct outbox *ob, struct outbox_entry *e, bool *full, char *err, size_t errlen)
{
	*full = false;
	if (!entry_clean(e)) {
		snprintf(err, errlen, "entry cannot be stored (a field holds a line break, or no recipient)");
		return -1;
	}
	struct buf data;
	buf_init(&data, 0);
	outbox_format(e, &data);
	if (total_bytes(ob) + buf_len(&data) > ob->max_bytes) {
		*full = true;
		snprintf(err, errlen, "the outbox is full (smtp.outbox_max_size = %zu bytes)", ob->max_bytes);
		buf_free(&data);
		return -1;
	}
	new_name(e->name);
	int rc = write_durably(ob, e->name, &data, err, errlen);
	buf_free(&data);
	return rc;
}

int outbox_replace(struct outbox *ob, const struct outbox_entry *e, char *err, size_t errlen)
{
	if (!valid_name(e->name) || !entry_clean(e)) {
		snprintf(err, errlen, "entry cannot be stored");
		return -1;
	}
	struct buf data;
	buf_init(&data, 0);
	outbox_format(e, &data);
	int rc = write_durably(ob, e->name, &data, err, errlen);
	buf_free(&data);
	return rc;
}

int outbox_remove(struct outbox *ob, const char *name, char *err, size_t errlen)
{
	if (!valid_name(name) || (unlinkat(ob->dirfd, name, 0) < 0 && errno != ENOENT)) {
		snprintf(err, errlen, "removing %s/%s: %s", ob->dir, name, strerror(errno));
		return -1;
	}
	if (fsync(ob->dirfd) < 0) {
		snprintf(err, errlen, "fsync %s: %s", ob->dir, strerror(errno));
		return -1;
	}
	return 0;
}

int outbox_load(struct outbox *ob, const char *name, struct outbox_entry *e, char *err, size_t errlen)
{
	outbox_entry_init(e);
	if (!valid_name(name)) {
		snprintf(err, errlen, "not an outbox entry name: %s", name);
		return -1;
	}
	int fd = openat(ob->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		snprintf(err, errlen, "%s/%s: %s", ob->dir, name, strerror(errno));
		return -1;
	}
	struct buf data;
	buf_init(&data, 0);
	for (;;) {
		uint8_t *p = buf_reserve(&data, 65536);
		ssize_t r = read(fd, p, 65536);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "reading %s/%s: %s", ob->dir, name, strerror(errno));
			close(fd);
			buf_free(&data);
			return -1;
		}
		if (r == 0)
			break;
		buf_commit(&data, (size_t)r);
	}
	close(fd);
	int rc = outbox_parse(buf_head(&data), buf_len(&data), e, err, errlen);
	buf_free(&data);
	if (rc < 0) {
		outbox_entry_free(e);
		outbox_entry_init(e);
		return -1;
	}
	snprintf(e->name, sizeof(e->name), "%s", name);
	return 0;
}
