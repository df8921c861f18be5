/*
 * loadgen: the benchmark's load client (not part of ledgerd).
 *
 *   loadgen --socket PATH --file EVENTS.ndjson [--connections C] [--batch B] [--inflight K]
 *           [--limit N] [--latency] [--timeout SECONDS] [--protocol ledger|redis] [--stream KEY]
 *
 * Reads the NDJSON file (one event envelope per line, compact, as scripts/generate-pilot-data
 * writes it) into memory, gives every event to one of C connections by hashing its "case" value (so
 * the events of one case keep their file order on one connection: ledgerd checks each case's
 * lifecycle), builds all requests before the clock starts, then sends batches of B events with up to
 * K requests in flight per connection over a Unix socket, one thread, epoll.
 *
 *   --protocol ledger  {"op":"append","events":[E1,...,EB]}\n per request; each response line must
 *                      have "ok":true and one "position" per event (duplicates are counted).
 *   --protocol redis   B pipelined `XADD KEY * e <event>` commands (RESP) per request; each reply
 *                      must be a bulk string (the entry id).
 *
 * Prints one JSON object on stdout: events, requests, seconds, events_per_s and the round trip of
 * each request (first byte written to last byte of its response read) as p50/p99/mean/max in
 * microseconds. --latency only says that the figures are the point (use it with -b 1 -k 1).
 * Exit 0 on success, 1 on an error response or a lost connection, 2 on usage, 3 on timeout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { PROTO_LEDGER, PROTO_REDIS };

typedef struct { const char *p; size_t n; } span;

typedef struct {
    span *v;
    size_t n, cap;
} spanvec;

typedef struct {
    int fd;
    /* requests, all built before the clock starts */
    char *buf;
    size_t buflen, bufcap;
    size_t *req_off, *req_len;
    uint32_t *req_events;
    double *sent_at;
    size_t nreq;
    size_t next_send; /* next request to start writing */
    size_t send_pos;  /* bytes of request next_send already written */
    size_t next_done; /* oldest request without its full response */
    uint32_t replies; /* redis: replies read for request next_done */
    int want_out;
    /* responses */
    char *rbuf;
    size_t rlen, rcap;
} conn;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(1);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die("out of memory");
    return q;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --socket PATH --file EVENTS.ndjson [--connections C] [--batch B] [--inflight K]\n"
            "               [--limit N] [--latency] [--timeout SECONDS] [--protocol ledger|redis] [--stream KEY]\n");
    exit(2);
}

static void push(spanvec *sv, span s) {
    if (sv->n == sv->cap) {
        sv->cap = sv->cap ? sv->cap * 2 : 1024;
        sv->v = xrealloc(sv->v, sv->cap * sizeof(span));
    }
    sv->v[sv->n++] = s;
}

static void append_bytes(conn *c, const void *p, size_t n) {
    if (c->buflen + n > c->bufcap) {
        size_t cap = c->bufcap ? c->bufcap : 1 << 16;
        while (cap < c->buflen + n) cap *= 2;
        c->buf = xrealloc(c->buf, cap);
        c->bufcap = cap;
    }
    memcpy(c->buf + c->buflen, p, n);
    c->buflen += n;
}

static void append_str(conn *c, const char *s) { append_bytes(c, s, strlen(s)); }

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)p[i]; h *= 1099511628211ULL; }
    return h;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* nearest rank: the ceil(p*n/100)-th smallest */
static double pct(const double *sorted, size_t n, double p) {
    if (!n) return 0;
    size_t r = (size_t)((p * (double)n + 99.999999) / 100.0);
    if (r < 1) r = 1;
    if (r > n) r = n;
    return sorted[r - 1];
}

static size_t count_occ(const char *p, size_t n, const char *needle) {
    size_t k = strlen(needle), c = 0;
    const char *end = p + n;
    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), needle, k);
        if (!q) break;
        c++;
        p = q + k;
    }
    return c;
}

int main(int argc, char **argv) {
    const char *sock = NULL, *file = NULL, *stream = "events";
    long conns = 4, batch = 1000, inflight = 4, limit = -1;
    double timeout = 600;
    int latency = 0, proto = PROTO_LEDGER;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), (char *)0))
        if (!strcmp(a, "--socket")) sock = NEXT();
        else if (!strcmp(a, "--file")) file = NEXT();
        else if (!strcmp(a, "--connections") || !strcmp(a, "-c")) conns = atol(NEXT());
        else if (!strcmp(a, "--batch") || !strcmp(a, "-b")) batch = atol(NEXT());
        else if (!strcmp(a, "--inflight") || !strcmp(a, "-k")) inflight = atol(NEXT());
        else if (!strcmp(a, "--limit")) limit = atol(NEXT());
        else if (!strcmp(a, "--timeout")) timeout = atof(NEXT());
        else if (!strcmp(a, "--latency")) latency = 1;
        else if (!strcmp(a, "--stream")) stream = NEXT();
        else if (!strcmp(a, "--protocol")) {
            const char *p = NEXT();
            if (!strcmp(p, "ledger")) proto = PROTO_LEDGER;
            else if (!strcmp(p, "redis")) proto = PROTO_REDIS;
            else usage();
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage();
        else { fprintf(stderr, "loadgen: unknown argument %s\n", a); usage(); }
    }
    if (!sock || !file || conns < 1 || conns > 4096 || batch < 1 || inflight < 1 || timeout <= 0) usage();

    /* read the file */
    int ffd = open(file, O_RDONLY);
    if (ffd < 0) { perror(file); return 1; }
    struct stat st;
    if (fstat(ffd, &st) < 0) { perror(file); return 1; }
    char *data = xrealloc(NULL, (size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(ffd, data + got, (size_t)st.st_size - got);
        if (r <= 0) { perror(file); return 1; }
        got += (size_t)r;
    }
    close(ffd);

    /* split lines and assign them to connections by case */
    spanvec *per = calloc((size_t)conns, sizeof(spanvec));
    if (!per) die("out of memory");
    size_t total = 0;
    const char *p = data, *end = data + got;
    static const char key[] = "\"case\":\"";
    while (p < end && (limit < 0 || (long)total < limit)) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        while (n && (p[n - 1] == '\r' || p[n - 1] == ' ')) n--;
        if (n) {
            size_t ci = 0;
            const char *k = memmem(p, n, key, sizeof key - 1);
            if (k) {
                const char *v = k + sizeof key - 1;
                const char *q = memchr(v, '"', (size_t)(p + n - v));
                if (q) ci = fnv1a(v, (size_t)(q - v)) % (uint64_t)conns;
            }
            push(&per[ci], (span){p, n});
            total++;
        }
        p = le + 1;
    }
    if (!total) die("no events in the file");

    /* build the requests */
    conn *cs = calloc((size_t)conns, sizeof(conn));
    if (!cs) die("out of memory");
    size_t klen = strlen(stream);
    for (long i = 0; i < conns; i++) {
        conn *c = &cs[i];
        spanvec *sv = &per[i];
        size_t nreq = (sv->n + (size_t)batch - 1) / (size_t)batch;
        c->nreq = nreq;
        c->req_off = xrealloc(NULL, nreq * sizeof(size_t));
        c->req_len = xrealloc(NULL, nreq * sizeof(size_t));
        c->req_events = xrealloc(NULL, nreq * sizeof(uint32_t));
        c->sent_at = xrealloc(NULL, nreq * sizeof(double));
        for (size_t r = 0; r < nreq; r++) {
            size_t from = r * (size_t)batch, to = from + (size_t)batch;
            if (to > sv->n) to = sv->n;
            c->req_off[r] = c->buflen;
            c->req_events[r] = (uint32_t)(to - from);
            if (proto == PROTO_LEDGER) {
                append_str(c, "{\"op\":\"append\",\"events\":[");
                for (size_t e = from; e < to; e++) {
                    if (e > from) append_bytes(c, ",", 1);
                    append_bytes(c, sv->v[e].p, sv->v[e].n);
                }
                append_str(c, "]}\n");
            } else {
                char hdr[128];
                for (size_t e = from; e < to; e++) {
                    int h = snprintf(hdr, sizeof hdr, "*5\r\n$4\r\nXADD\r\n$%zu\r\n", klen);
                    append_bytes(c, hdr, (size_t)h);
                    append_bytes(c, stream, klen);
                    h = snprintf(hdr, sizeof hdr, "\r\n$1\r\n*\r\n$1\r\ne\r\n$%zu\r\n", sv->v[e].n);
                    append_bytes(c, hdr, (size_t)h);
                    append_bytes(c, sv->v[e].p, sv->v[e].n);
                    append_bytes(c, "\r\n", 2);
                }
            }
            c->req_len[r] = c->buflen - c->req_off[r];
        }
        free(sv->v);
        c->rcap = 1 << 16;
        c->rbuf = xrealloc(NULL, c->rcap);
    }
    free(per);

    /* connect */
    int ep = epoll_create1(0);
    if (ep < 0) { perror("epoll_create1"); return 1; }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(sock) >= sizeof sa.sun_path) die("socket path too long");
    strcpy(sa.sun_path, sock);
    size_t active = 0;
    for (long i = 0; i < conns; i++) {
        conn *c = &cs[i];
        c->fd = -1;
        if (!c->nreq) continue;
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0) { perror("socket"); return 1; }
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            fprintf(stderr, "loadgen: connect %s: %s\n", sock, strerror(errno));
            return 1;
        }
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) { perror("epoll_ctl"); return 1; }
        active++;
    }

    size_t done_reqs = 0, done_events = 0, duplicates = 0, total_reqs = 0;
    for (long i = 0; i < conns; i++) total_reqs += cs[i].nreq;
    double *lat = xrealloc(NULL, total_reqs * sizeof(double));
    struct epoll_event evs[256];

    double t0 = now_s();
    double deadline = t0 + timeout;

#define SEND(c, idx)                                                                                  \
    do {                                                                                              \
        while ((c)->next_send < (c)->nreq && (c)->next_send - (c)->next_done < (size_t)inflight) {    \
            size_t r_ = (c)->next_send;                                                               \
            if ((c)->send_pos == 0) (c)->sent_at[r_] = now_s();                                       \
            ssize_t w_ = write((c)->fd, (c)->buf + (c)->req_off[r_] + (c)->send_pos,                  \
                               (c)->req_len[r_] - (c)->send_pos);                                     \
            if (w_ < 0) {                                                                             \
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;                                   \
                if (errno == EINTR) continue;                                                         \
                fprintf(stderr, "loadgen: write: %s\n", strerror(errno));                             \
                exit(1);                                                                              \
            }                                                                                         \
            (c)->send_pos += (size_t)w_;                                                              \
            if ((c)->send_pos == (c)->req_len[r_]) { (c)->send_pos = 0; (c)->next_send++; }           \
        }                                                                                             \
        int want_ = (c)->next_send < (c)->nreq && (c)->send_pos > 0;                                  \
        if (want_ != (c)->want_out) {                                                                 \
            struct epoll_event e_ = {.events = EPOLLIN | (want_ ? EPOLLOUT : 0), .data.u64 = (idx)};  \
            epoll_ctl(ep, EPOLL_CTL_MOD, (c)->fd, &e_);                                               \
            (c)->want_out = want_;                                                                    \
        }                                                                                             \
    } while (0)

    for (long i = 0; i < conns; i++)
        if (cs[i].nreq) SEND(&cs[i], (uint64_t)i);

    while (active) {
        double left = deadline - now_s();
        if (left <= 0) {
            fprintf(stderr, "loadgen: timeout after %.0f s: %zu of %zu events acknowledged\n", timeout,
                    done_events, total);
            return 3;
        }
        int n = epoll_wait(ep, evs, 256, left > 1 ? 1000 : (int)(left * 1000) + 1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int j = 0; j < n; j++) {
            uint64_t idx = evs[j].data.u64;
            conn *c = &cs[idx];
            if (c->fd < 0) continue;
            if (evs[j].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                for (;;) {
                    if (c->rcap - c->rlen < 65536) {
                        c->rcap *= 2;
                        c->rbuf = xrealloc(c->rbuf, c->rcap);
                    }
                    ssize_t r = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
                    if (r < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                        if (errno == EINTR) continue;
                        fprintf(stderr, "loadgen: read: %s\n", strerror(errno));
                        return 1;
                    }
                    if (r == 0) {
                        fprintf(stderr, "loadgen: the server closed a connection with %zu requests unanswered\n",
                                c->nreq - c->next_done);
                        return 1;
                    }
                    c->rlen += (size_t)r;
                    if ((size_t)r < 65536) break;
                }
                /* consume complete responses */
                size_t pos = 0;
                double t = now_s();
                if (proto == PROTO_LEDGER) {
                    for (;;) {
                        char *nl = memchr(c->rbuf + pos, '\n', c->rlen - pos);
                        if (!nl) break;
                        char *line = c->rbuf + pos;
                        size_t ln = (size_t)(nl - line);
                        pos += ln + 1;
                        if (!ln) continue;
                        if (c->next_done >= c->next_send) die("a response without a request");
                        size_t r = c->next_done;
                        if (!memmem(line, ln, "\"ok\":true", 9)) {
                            fprintf(stderr, "loadgen: error response to request %zu of connection %ld: %.*s\n",
                                    r, (long)idx, (int)(ln > 600 ? 600 : ln), line);
                            return 1;
                        }
                        size_t np = count_occ(line, ln, "\"position\"");
                        if (np != c->req_events[r]) {
                            fprintf(stderr, "loadgen: %zu results for %u events: %.*s\n", np, c->req_events[r],
                                    (int)(ln > 600 ? 600 : ln), line);
                            return 1;
                        }
                        duplicates += count_occ(line, ln, "\"duplicate\":true");
                        lat[done_reqs++] = t - c->sent_at[r];
                        done_events += c->req_events[r];
                        c->next_done++;
                    }
                } else {
                    for (;;) {
                        char *s = c->rbuf + pos;
                        size_t avail = c->rlen - pos;
                        if (avail < 3) break;
                        char *crlf = memmem(s, avail, "\r\n", 2);
                        if (!crlf) break;
                        size_t consumed;
                        if (s[0] == '$') {
                            long bl = strtol(s + 1, NULL, 10);
                            if (bl < 0) {
                                fprintf(stderr, "loadgen: redis replied a null bulk string\n");
                                return 1;
                            }
                            size_t need = (size_t)(crlf - s) + 2 + (size_t)bl + 2;
                            if (avail < need) break;
                            consumed = need;
                        } else if (s[0] == '-') {
                            fprintf(stderr, "loadgen: redis error: %.*s\n", (int)(crlf - s), s);
                            return 1;
                        } else {
                            fprintf(stderr, "loadgen: unexpected redis reply: %.*s\n", (int)(crlf - s), s);
                            return 1;
                        }
                        pos += consumed;
                        /* redis answers each command as it arrives: the request may still be partly unsent */
                        if (c->next_done > c->next_send || (c->next_done == c->next_send && !c->send_pos))
                            die("a reply without a request");
                        if (++c->replies == c->req_events[c->next_done]) {
                            lat[done_reqs++] = t - c->sent_at[c->next_done];
                            done_events += c->req_events[c->next_done];
                            c->next_done++;
                            c->replies = 0;
                        }
                    }
                }
                if (pos) {
                    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
                    c->rlen -= pos;
                }
                if (c->next_done == c->nreq) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    c->fd = -1;
                    active--;
                    continue;
                }
            }
            SEND(c, idx);
        }
    }
    double secs = now_s() - t0;

    qsort(lat, done_reqs, sizeof(double), cmp_double);
    double sum = 0;
    for (size_t i = 0; i < done_reqs; i++) sum += lat[i];
    printf("{\"protocol\":\"%s\",\"connections\":%ld,\"batch\":%ld,\"inflight\":%ld,\"latency_mode\":%s,"
           "\"events\":%zu,\"requests\":%zu,\"duplicates\":%zu,\"seconds\":%.6f,\"events_per_s\":%.1f,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,\"max_us\":%.1f}\n",
           proto == PROTO_LEDGER ? "ledger" : "redis", conns, batch, inflight, latency ? "true" : "false",
           done_events, done_reqs, duplicates, secs, (double)done_events / secs, pct(lat, done_reqs, 50) * 1e6,
           pct(lat, done_reqs, 99) * 1e6, done_reqs ? sum / (double)done_reqs * 1e6 : 0.0,
           done_reqs ? lat[done_reqs - 1] * 1e6 : 0.0);
    return 0;
}
