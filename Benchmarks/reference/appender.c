/*
 * appender: the benchmark's physical reference (not part of ledgerd).
 *
 *   appender --socket PATH --data-dir DIR
 *
 * The least a durable socket appender over LMDB has to do: one thread, epoll over the connections,
 * newline-delimited requests {"op":"append","events":[E1,...]} (it assumes compact one-line JSON as
 * scripts/generate-pilot-data writes it: it finds the events array and splits it at the top-level
 * objects, honouring strings, without parsing the events), appends each event's bytes to the LMDB
 * named database "events" under its position (big-endian u64, from 1, MDB_APPEND), one write
 * transaction per request with LMDB's default durable flags (the commit fsyncs), and only then
 * answers {"ok":true,"results":[{"position":N,"duplicate":false},...]}. No validation, no hash
 * chain, no indexes, no projections, no group commit across requests. {"op":"status"} answers the
 * head. SIGTERM or SIGINT: close the environment, remove the socket, exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_LINE (16u << 20)
#define MAX_EVENTS 10000

typedef struct {
    int fd;
    char *rbuf;
    size_t rlen, rcap;
    char *wbuf;
    size_t wlen, wpos, wcap;
    int want_out;
    int discarding; /* inside a line that was too long */
} conn;

static volatile sig_atomic_t stop;
static MDB_env *env;
static MDB_dbi dbi;
static uint64_t head;
static int ep;
static conn **conns;
static size_t nconns;

static void on_signal(int s) { (void)s; stop = 1; }

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) { fprintf(stderr, "appender: out of memory\n"); exit(1); }
    return q;
}

static void out(conn *c, const char *p, size_t n) {
    if (c->wlen + n > c->wcap) {
        size_t cap = c->wcap ? c->wcap : 1 << 16;
        while (cap < c->wlen + n) cap *= 2;
        c->wbuf = xrealloc(c->wbuf, cap);
        c->wcap = cap;
    }
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += n;
}

static void out_str(conn *c, const char *s) { out(c, s, strlen(s)); }

static void error_reply(conn *c, const char *code, const char *msg) {
    char b[512];
    int n = snprintf(b, sizeof b, "{\"ok\":false,\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n", code, msg);
    out(c, b, (size_t)n);
}

static const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

/* the end (one past) of the JSON object starting at p, or NULL */
static const char *object_end(const char *p, const char *e) {
    int depth = 0, in_str = 0;
    for (; p < e; p++) {
        char ch = *p;
        if (in_str) {
            if (ch == '\\') p++;
            else if (ch == '"') in_str = 0;
        } else if (ch == '"') in_str = 1;
        else if (ch == '{' || ch == '[') depth++;
        else if (ch == '}' || ch == ']') {
            if (--depth == 0) return p + 1;
            if (depth < 0) return NULL;
        }
    }
    return NULL;
}

static MDB_val spans[MAX_EVENTS];

static void handle_line(conn *c, const char *line, size_t n) {
    const char *e = line + n;
    static const char key[] = "\"events\":[";
    const char *k = memmem(line, n, key, sizeof key - 1);
    if (!k) {
        if (memmem(line, n, "\"op\":\"status\"", 13)) {
            char b[128];
            int m = snprintf(b, sizeof b, "{\"ok\":true,\"head\":%llu}\n", (unsigned long long)head);
            out(c, b, (size_t)m);
        } else
            error_reply(c, "malformed", "not an append with an events array");
        return;
    }
    const char *p = skip_ws(k + sizeof key - 1, e);
    size_t cnt = 0;
    if (p < e && *p == ']') { error_reply(c, "invalid_event", "no events"); return; }
    for (;;) {
        if (p >= e || *p != '{') { error_reply(c, "malformed", "expected an event object"); return; }
        const char *q = object_end(p, e);
        if (!q) { error_reply(c, "malformed", "unterminated event"); return; }
        if (cnt == MAX_EVENTS) { error_reply(c, "too_large", "more than 10000 events"); return; }
        spans[cnt].mv_data = (void *)p;
        spans[cnt].mv_size = (size_t)(q - p);
        cnt++;
        p = skip_ws(q, e);
        if (p < e && *p == ',') { p = skip_ws(p + 1, e); continue; }
        if (p < e && *p == ']') break;
        error_reply(c, "malformed", "expected , or ] in the events array");
        return;
    }

    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc) { error_reply(c, "unavailable", mdb_strerror(rc)); return; }
    uint64_t pos = head;
    for (size_t i = 0; i < cnt; i++) {
        unsigned char kb[8];
        uint64_t v = ++pos;
        for (int b = 7; b >= 0; b--) { kb[b] = (unsigned char)(v & 0xff); v >>= 8; }
        MDB_val kv = {8, kb};
        rc = mdb_put(txn, dbi, &kv, &spans[i], MDB_APPEND);
        if (rc) break;
    }
    if (rc) { mdb_txn_abort(txn); error_reply(c, "unavailable", mdb_strerror(rc)); return; }
    rc = mdb_txn_commit(txn); /* durable: fsync before returning */
    if (rc) { error_reply(c, "unavailable", mdb_strerror(rc)); return; }

    out_str(c, "{\"ok\":true,\"results\":[");
    char b[64];
    for (size_t i = 0; i < cnt; i++) {
        int m = snprintf(b, sizeof b, "%s{\"position\":%llu,\"duplicate\":false}", i ? "," : "",
                         (unsigned long long)(head + 1 + i));
        out(c, b, (size_t)m);
    }
    out_str(c, "]}\n");
    head = pos;
}

static void close_conn(conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conns[c->fd] = NULL;
    free(c->rbuf);
    free(c->wbuf);
    free(c);
}

/* returns 0 if the connection was closed */
static int flush_out(conn *c) {
    while (c->wpos < c->wlen) {
        ssize_t w = write(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            close_conn(c);
            return 0;
        }
        c->wpos += (size_t)w;
    }
    if (c->wpos == c->wlen) c->wpos = c->wlen = 0;
    int want = c->wlen > 0;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.fd = c->fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
    return 1;
}

static void on_readable(conn *c) {
    for (;;) {
        if (c->rcap - c->rlen < 65536) {
            c->rcap = c->rcap ? c->rcap * 2 : 1 << 17;
            c->rbuf = xrealloc(c->rbuf, c->rcap);
        }
        ssize_t r = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            close_conn(c);
            return;
        }
        if (r == 0) { close_conn(c); return; }
        c->rlen += (size_t)r;
        /* execute every complete line */
        size_t pos = 0;
        for (;;) {
            char *nl = memchr(c->rbuf + pos, '\n', c->rlen - pos);
            if (!nl) break;
            size_t n = (size_t)(nl - (c->rbuf + pos));
            if (c->discarding) c->discarding = 0;
            else if (n) handle_line(c, c->rbuf + pos, n);
            pos += n + 1;
        }
        if (pos) { memmove(c->rbuf, c->rbuf + pos, c->rlen - pos); c->rlen -= pos; }
        if (c->rlen > MAX_LINE) {
            if (!c->discarding) error_reply(c, "too_large", "line over 16 MiB");
            c->discarding = 1;
            c->rlen = 0;
        }
        if (!flush_out(c)) return;
        if ((size_t)r < 65536) break;
    }
}

int main(int argc, char **argv) {
    const char *sock = NULL, *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) sock = argv[++i];
        else if (!strcmp(argv[i], "--data-dir") && i + 1 < argc) dir = argv[++i];
        else { fprintf(stderr, "usage: appender --socket PATH --data-dir DIR\n"); return 2; }
    }
    if (!sock || !dir) { fprintf(stderr, "usage: appender --socket PATH --data-dir DIR\n"); return 2; }

    mkdir(dir, 0700);
    int rc;
    if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_maxdbs(env, 16)) ||
        (rc = mdb_env_set_mapsize(env, (size_t)64 << 30)) || (rc = mdb_env_open(env, dir, 0, 0600))) {
        fprintf(stderr, "appender: %s: %s\n", dir, mdb_strerror(rc));
        return 1;
    }
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) || (rc = mdb_dbi_open(txn, "events", MDB_CREATE, &dbi))) {
        fprintf(stderr, "appender: %s\n", mdb_strerror(rc));
        return 1;
    }
    MDB_cursor *cur;
    MDB_val k, v;
    if (!mdb_cursor_open(txn, dbi, &cur) && !mdb_cursor_get(cur, &k, &v, MDB_LAST) && k.mv_size == 8) {
        for (int b = 0; b < 8; b++) head = (head << 8) | ((unsigned char *)k.mv_data)[b];
        mdb_cursor_close(cur);
    }
    if ((rc = mdb_txn_commit(txn))) { fprintf(stderr, "appender: %s\n", mdb_strerror(rc)); return 1; }

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof addr.sun_path) { fprintf(stderr, "appender: socket path too long\n"); return 2; }
    strcpy(addr.sun_path, sock);
    unlink(sock);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 1024) < 0) {
        fprintf(stderr, "appender: %s: %s\n", sock, strerror(errno));
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    fprintf(stderr, "appender: serving %s, head %llu\n", sock, (unsigned long long)head);

    struct epoll_event evs[256];
    while (!stop) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0) break;
                    if ((size_t)cfd >= nconns) {
                        size_t nn = (size_t)cfd * 2 + 16;
                        conns = xrealloc(conns, nn * sizeof(conn *));
                        memset(conns + nconns, 0, (nn - nconns) * sizeof(conn *));
                        nconns = nn;
                    }
                    conn *c = calloc(1, sizeof(conn));
                    c->fd = cfd;
                    conns[cfd] = c;
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
                }
                continue;
            }
            conn *c = (size_t)fd < nconns ? conns[fd] : NULL;
            if (!c) continue;
            if (evs[i].events & EPOLLOUT) {
                if (!flush_out(c)) continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
    close(lfd);
    unlink(sock);
    mdb_env_close(env);
    fprintf(stderr, "appender: stopped at head %llu\n", (unsigned long long)head);
    return 0;
}
