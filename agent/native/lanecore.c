/*
 * The small-file lane's per-file loop in C (see agent/lane.py and agent/native/__init__.py).
 *
 * Why C: for a file of a few KiB the lane's Python costs about as much as its system calls, and
 * `cp -a` pays only the system calls. This does steps 1 and 2 of the lane's protocol for a whole
 * group in one call, with the interpreter lock released: open the file without following links,
 * lock it, check it has no HSM record, read it whole, hash it (SHA-256), write the object with
 * its metadata xattr and link it into place, never replacing a name. Everything it cannot do
 * the ordinary way it hands back untouched (LANE_HAND_BACK), and the Python lane or the general
 * path decides, exactly as for the Python version of this loop. It never records, releases or
 * deletes anything: those steps stay in Python.
 *
 * The object's metadata is rendered from a template the Python side builds with the real
 * encoder (agent/native/__init__.py), so the format has one definition. A template byte 0x01 is
 * followed by a field code: h sha256, s size, m mode (%04o), u uid, g gid, M mtime_ns,
 * A atime_ns, I inode, C ctime_ns, p the file's encoded path (given per file).
 *
 * lane_commit does step 4 for the staged files, after the caller made the group's objects
 * durable: verify each object (the inode at its key is the one written, which lane_stage hands
 * back open so that its number cannot be reused meanwhile, with the size read),
 * check the source did not change (size, mtime, ctime through the descriptor, inode at its
 * name), and write its HSM record, rendered the same way from a template of HsmRecord.to_bytes
 * (codes h s M I C as above, S the stub size, k the object key). A changed file's object is
 * removed and it is not recorded.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/evp.h>

enum { LANE_STAGED = 0, LANE_HAND_BACK = 1, LANE_SHORT = 2 };
enum { LANE_COMMITTED = 0, /* LANE_HAND_BACK = 1, */ LANE_GONE = 3, LANE_REPLACED = 4, LANE_MODIFIED = 5,
       LANE_RECORD_FAILED = 6 };
enum { CHANGED_SIZE = 1, CHANGED_MTIME = 2, CHANGED_CTIME = 4, CHANGED_INODE = 8 };

/* One file's answer; every field is 64 bits so the Python side unpacks it with one format. */
struct lane_out {
    int64_t status;   /* LANE_* */
    int64_t fd;       /* LANE_STAGED: the open, locked source; the caller closes it */
    int64_t err;      /* the errno behind a hand-back, for logs and tests */
    int64_t ino, dev, mode, uid, gid, size, mtime_ns, atime_ns, ctime_ns;
    int64_t obj_fd;   /* LANE_STAGED: the object, kept open until the commit; the caller closes it */
    int64_t obj_ino, obj_dev;  /* the object's inode, to verify it after the group's sync */
    char sha256[64];  /* lower-case hex, no terminator */
};

/* One file's commit answer. */
struct lane_commit_out {
    int64_t status;   /* LANE_COMMITTED, LANE_HAND_BACK (object removed, nothing recorded), ... */
    int64_t err;      /* the errno of LANE_GONE, LANE_RECORD_FAILED or a hand-back */
    int64_t changes;  /* LANE_MODIFIED: CHANGED_* bits */
    int64_t size, mtime_ns, ctime_ns;  /* the file just after its record was written */
};

int lane_abi_version(void) { return 5; }

/* Nanoseconds since the epoch, or -1 (with *ok cleared) if it does not fit in 64 bits. */
static int64_t ns_of(struct timespec ts, int *ok) {
    if (ts.tv_sec > 9000000000LL || ts.tv_sec < -9000000000LL) {
        *ok = 0;
        return 0;
    }
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Append to a growing buffer. */
struct buf {
    char *data;
    size_t len, cap;
};

static int buf_put(struct buf *b, const char *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

static int render(struct buf *out, const char *tmpl, size_t tmpl_len, const struct lane_out *o,
                  const char *text, int64_t stub_size) {
    char num[32];
    out->len = 0;
    for (size_t i = 0; i < tmpl_len; i++) {
        if (tmpl[i] != 1) {
            size_t j = i;
            while (j < tmpl_len && tmpl[j] != 1) j++;
            if (buf_put(out, tmpl + i, j - i)) return -1;
            i = j - 1;
            continue;
        }
        if (++i >= tmpl_len) return -1;
        int n;
        switch (tmpl[i]) {
        case 'h': if (buf_put(out, o->sha256, 64)) return -1; continue;
        case 'p': case 'k': if (buf_put(out, text, strlen(text))) return -1; continue;
        case 'S': n = snprintf(num, sizeof num, "%" PRId64, stub_size); break;
        case 's': n = snprintf(num, sizeof num, "%" PRId64, o->size); break;
        case 'm': n = snprintf(num, sizeof num, "%04o", (unsigned)(o->mode & 07777)); break;
        case 'u': n = snprintf(num, sizeof num, "%" PRIu64, (uint64_t)o->uid); break;
        case 'g': n = snprintf(num, sizeof num, "%" PRIu64, (uint64_t)o->gid); break;
        case 'M': n = snprintf(num, sizeof num, "%" PRId64, o->mtime_ns); break;
        case 'A': n = snprintf(num, sizeof num, "%" PRId64, o->atime_ns); break;
        case 'I': n = snprintf(num, sizeof num, "%" PRIu64, (uint64_t)o->ino); break;
        case 'C': n = snprintf(num, sizeof num, "%" PRId64, o->ctime_ns); break;
        default: return -1;
        }
        if (buf_put(out, num, (size_t)n)) return -1;
    }
    return 0;
}

static int write_all(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t w = write(fd, data, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The object's bytes and metadata into `fd`, and its stat; 0 or -1 with errno. */
static int fill_object(int fd, const char *data, size_t len, const char *meta, size_t meta_len,
                       const char *xattr, struct stat *st) {
    return write_all(fd, data, len) || fsetxattr(fd, xattr, meta, meta_len, 0) || fstat(fd, st) ? -1 : 0;
}

/* Write the object's bytes and metadata to an unnamed file (O_TMPFILE) and link it at `name`,
 * or, where the filesystem has no O_TMPFILE, to a named temporary file as FolderStore does.
 * (Linking by descriptor needs CAP_DAC_READ_SEARCH before Linux 6.10: without it, through
 * /proc/self/fd.) Returns 0 with *st and *obj_fd (held open) set, or an errno (EEXIST: the
 * name is taken; nothing was replaced). */
static int write_object(int dir, const char *name, const char *data, size_t len, const char *meta,
                        size_t meta_len, const char *xattr, const char *tmp_prefix, struct stat *st,
                        int *obj_fd) {
    int fd = openat(dir, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    if (fd >= 0) {
        int err = 0;
        if (fill_object(fd, data, len, meta, meta_len, xattr, st)) {
            err = errno;
        } else if (linkat(fd, "", dir, name, AT_EMPTY_PATH)) {
            err = errno;
            if (err == EPERM || err == ENOENT || err == EINVAL) {  /* no CAP_DAC_READ_SEARCH */
                char proc[64];
                snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
                err = linkat(AT_FDCWD, proc, dir, name, AT_SYMLINK_FOLLOW) ? errno : 0;
            }
        }
        if (err) {
            close(fd);  /* an unlinked O_TMPFILE inode vanishes here */
            return err;
        }
        *obj_fd = fd;
        return 0;
    }
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return errno;

    unsigned char rnd[12];
    char tmp[256];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) return errno ? errno : EIO;
    int at = snprintf(tmp, sizeof tmp, "%s", tmp_prefix);
    for (size_t i = 0; i < sizeof rnd && at + 2 < (int)sizeof tmp; i++)
        at += snprintf(tmp + at, sizeof tmp - (size_t)at, "%02x", rnd[i]);
    fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0) return errno;
    int err = 0;
    if (fill_object(fd, data, len, meta, meta_len, xattr, st)) err = errno;
    if (!err && linkat(dir, tmp, dir, name, 0)) err = errno;
    unlinkat(dir, tmp, 0);
    if (err) {
        close(fd);
        return err;
    }
    *obj_fd = fd;
    return 0;
}

static const char *next_string(const char *s) { return s + strlen(s) + 1; }

/*
 * Stage `n` files. Strings come NUL-separated: `names` (each file's name in its source
 * directory), `obj_names` (its object's name in its object directory) and `paths` (its encoded,
 * JSON-escaped path for the metadata). `open_flags` are the source's open flags, `noatime` is
 * added when permitted. `limit`: the largest file staged here. Returns 0, or -1 if memory ran
 * out (every file not yet answered is then handed back).
 */
int lane_stage(int n, const int32_t *src_dirs, const char *names, const int32_t *obj_dirs,
               const char *obj_names, const char *paths, const char *tmpl, size_t tmpl_len,
               int open_flags, int noatime, int64_t limit, const char *record_xattr,
               const char *object_xattr, const char *tmp_prefix, struct lane_out *out) {
    static const char hex[] = "0123456789abcdef";
    struct buf data = {0}, meta = {0};
    int rc = 0;
    for (int i = 0; i < n; i++) {
        struct lane_out *o = &out[i];
        memset(o, 0, sizeof *o);
        o->status = LANE_HAND_BACK;
        o->fd = -1;
        o->obj_fd = -1;
    }
    for (int i = 0; i < n; i++, names = next_string(names), obj_names = next_string(obj_names),
             paths = next_string(paths)) {
        struct lane_out *o = &out[i];
        int fd = openat(src_dirs[i], names, open_flags | noatime);
        if (fd < 0 && errno == EPERM && noatime) fd = openat(src_dirs[i], names, open_flags);
        if (fd < 0) {
            o->err = errno;
            continue;
        }
        struct stat st;
        int ok = 1;
        if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > limit) goto hand_back;
        o->ino = (int64_t)st.st_ino;
        o->dev = (int64_t)st.st_dev;
        o->mode = st.st_mode;
        o->uid = st.st_uid;
        o->gid = st.st_gid;
        o->size = st.st_size;
        o->mtime_ns = ns_of(st.st_mtim, &ok);
        o->atime_ns = ns_of(st.st_atim, &ok);
        o->ctime_ns = ns_of(st.st_ctim, &ok);
        if (!ok) goto hand_back;  /* a time past 2262: the Python code has no such limit */
        if (flock(fd, LOCK_EX | LOCK_NB)) goto hand_back;  /* busy, or no locks here */
        if (fgetxattr(fd, record_xattr, NULL, 0) >= 0) {
            errno = EEXIST;
            goto hand_back;  /* managed already: the general path decides (skip, release, re-upload) */
        }
        if (errno != ENODATA) goto hand_back;  /* no xattrs here, or an error */
        /* Read it whole, asking for one byte more than its size: growth shows. */
        size_t want = (size_t)st.st_size + 1, got = 0;
        if (data.cap < want) {
            char *grown = realloc(data.data, want);
            if (!grown) {
                rc = -1;
                close(fd);
                break;
            }
            data.data = grown;
            data.cap = want;
        }
        while (got < want) {
            ssize_t r = pread(fd, data.data + got, want - got, (off_t)got);
            if (r < 0) {
                if (errno == EINTR) continue;
                goto hand_back;
            }
            if (r == 0) break;
            got += (size_t)r;
            if ((size_t)r < want - (got - (size_t)r)) break;  /* a regular file reads short only at its end */
        }
        if (got != (size_t)st.st_size) {
            o->status = LANE_SHORT;  /* it changed size while read: not uploaded */
            close(fd);
            continue;
        }
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        if (!EVP_Digest(data.data, got, md, &md_len, EVP_sha256(), NULL) || md_len != 32) {
            errno = EIO;
            goto hand_back;
        }
        for (int k = 0; k < 32; k++) {
            o->sha256[2 * k] = hex[md[k] >> 4];
            o->sha256[2 * k + 1] = hex[md[k] & 15];
        }
        if (render(&meta, tmpl, tmpl_len, o, paths, 0)) {
            errno = ENOMEM;
            goto hand_back;
        }
        struct stat obj;
        int obj_fd = -1;
        int err = write_object(obj_dirs[i], obj_names, data.data, got, meta.data, meta.len, object_xattr,
                               tmp_prefix, &obj, &obj_fd);
        if (err) {
            errno = err;
            goto hand_back;  /* EEXIST: the key is taken; the general path picks one */
        }
        o->obj_fd = obj_fd;
        o->obj_ino = (int64_t)obj.st_ino;
        o->obj_dev = (int64_t)obj.st_dev;
        o->fd = fd;
        o->status = LANE_STAGED;
        continue;
    hand_back:
        o->err = errno;
        o->status = LANE_HAND_BACK;
        close(fd);
    }
    free(data.data);
    free(meta.data);
    return rc;
}

/*
 * Commit `n` staged files. `io[i]` is the file's staging answer (its fd, what was seen, its
 * object's inode and checksum); `keys` are the JSON-escaped object keys, NUL-separated.
 * `stub_limit`: the record's stub size is min(stub_limit, size). `want_recorded`: fill in the
 * file's size and times after its record was written (for the release that follows). Every
 * object descriptor is closed on return, and with `close_source` every source descriptor.
 */
int lane_commit(int n, const struct lane_out *io, const int32_t *src_dirs, const char *names,
                const int32_t *obj_dirs, const char *obj_names, const char *keys, const char *tmpl,
                size_t tmpl_len, int64_t stub_limit, int want_recorded, int close_source,
                const char *record_xattr, struct lane_commit_out *out) {
    struct buf record = {0};
    int rc = 0;
    for (int i = 0; i < n; i++, names = next_string(names), obj_names = next_string(obj_names),
             keys = next_string(keys)) {
        const struct lane_out *f = &io[i];
        struct lane_commit_out *o = &out[i];
        memset(o, 0, sizeof *o);
        struct stat obj, now, at_name;
        /* The object at the key is the one written: the inode there is the one this call's caller
         * still holds open (so its number cannot have been reused by another file), and it has
         * the size read. */
        if (fstatat(obj_dirs[i], obj_names, &obj, AT_SYMLINK_NOFOLLOW)) {
            o->status = LANE_GONE;
            o->err = errno;
            continue;
        }
        if ((int64_t)obj.st_ino != f->obj_ino || (int64_t)obj.st_dev != f->obj_dev || obj.st_size != f->size) {
            o->status = LANE_REPLACED;
            continue;
        }
        int ok = 1;
        if (fstat((int)f->fd, &now)) goto hand_back;
        if (now.st_size != f->size) o->changes |= CHANGED_SIZE;
        if (ns_of(now.st_mtim, &ok) != f->mtime_ns) o->changes |= CHANGED_MTIME;
        if (ns_of(now.st_ctim, &ok) != f->ctime_ns) o->changes |= CHANGED_CTIME;
        if (fstatat(src_dirs[i], names, &at_name, AT_SYMLINK_NOFOLLOW)) {
            if (errno != ENOENT) goto hand_back;
            o->changes |= CHANGED_INODE;  /* gone from its name: renamed or deleted */
        } else if ((int64_t)at_name.st_ino != f->ino) {
            o->changes |= CHANGED_INODE;  /* replaced, e.g. by an editor's rename */
        }
        if (o->changes || !ok) {
            o->changes |= ok ? 0 : CHANGED_MTIME;
            unlinkat(obj_dirs[i], obj_names, 0);  /* the object of the old content goes */
            o->status = LANE_MODIFIED;
            continue;
        }
        int64_t stub = stub_limit < f->size ? stub_limit : f->size;
        if (render(&record, tmpl, tmpl_len, f, keys, stub)) {
            rc = -1;
            errno = ENOMEM;
            goto keep;
        }
        if (fsetxattr((int)f->fd, record_xattr, record.data, record.len, 0)) {
            o->status = LANE_RECORD_FAILED;
            o->err = errno;
            continue;
        }
        if (want_recorded) {
            struct stat rec;
            if (fstat((int)f->fd, &rec)) {
                o->status = LANE_RECORD_FAILED;
                o->err = errno;
                continue;
            }
            o->size = rec.st_size;
            o->mtime_ns = ns_of(rec.st_mtim, &ok);
            o->ctime_ns = ns_of(rec.st_ctim, &ok);
        }
        o->status = LANE_COMMITTED;
        continue;
    hand_back:
        unlinkat(obj_dirs[i], obj_names, 0);  /* not recorded: the general path starts over */
    keep:
        o->err = errno;
        o->status = LANE_HAND_BACK;
    }
    for (int i = 0; i < n; i++) {  /* every object descriptor, and the sources' when asked */
        close((int)io[i].obj_fd);
        if (close_source) close((int)io[i].fd);
    }
    free(record.data);
    return rc;
}
