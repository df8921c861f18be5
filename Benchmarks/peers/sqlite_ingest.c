/*
 * sqlite_ingest: the SQLite peer of the ingest benchmark (not part of ledgerd).
 *
 *   sqlite_ingest --db FILE --file EVENTS.ndjson [--batch B] [--limit N]
 *
 * SQLite is embedded, so it is measured in process, one writer, no socket: journal_mode=WAL,
 * synchronous=FULL (every commit fsyncs the WAL), table events(position INTEGER PRIMARY KEY, body
 * TEXT NOT NULL), one transaction per batch of B events (default 1,000) with a prepared INSERT.
 * The file is read into memory before the clock starts. Prints one JSON object:
 * {"events":N,"seconds":S,"events_per_s":R,"db_bytes":B}.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(sqlite3 *db, int rc, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "sqlite_ingest: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

int main(int argc, char **argv) {
    const char *dbpath = NULL, *file = NULL;
    long batch = 1000, limit = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc) dbpath = argv[++i];
        else if (!strcmp(argv[i], "--file") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atol(argv[++i]);
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc) limit = atol(argv[++i]);
        else { fprintf(stderr, "usage: sqlite_ingest --db FILE --file EVENTS.ndjson [--batch B] [--limit N]\n"); return 2; }
    }
    if (!dbpath || !file || batch < 1) {
        fprintf(stderr, "usage: sqlite_ingest --db FILE --file EVENTS.ndjson [--batch B] [--limit N]\n");
        return 2;
    }
    int fd = open(file, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) { perror(file); return 1; }
    char *data = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
        if (r <= 0) { perror(file); return 1; }
        got += (size_t)r;
    }
    close(fd);
    size_t cap = 1 << 20, n = 0;
    const char **lp = malloc(cap * sizeof(char *));
    int *ll = malloc(cap * sizeof(int));
    for (char *p = data, *end = data + got; p < end && (limit < 0 || (long)n < limit);) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        if (le > p) {
            if (n == cap) {
                cap *= 2;
                lp = realloc(lp, cap * sizeof(char *));
                ll = realloc(ll, cap * sizeof(int));
            }
            lp[n] = p;
            ll[n] = (int)(le - p);
            n++;
        }
        p = le + 1;
    }

    sqlite3 *db;
    if (sqlite3_open(dbpath, &db) != SQLITE_OK) { fprintf(stderr, "sqlite_ingest: cannot open %s\n", dbpath); return 1; }
    check(db, sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), "journal_mode");
    check(db, sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL), "synchronous");
    check(db, sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS events(position INTEGER PRIMARY KEY, body TEXT NOT NULL)",
                           NULL, NULL, NULL), "create");
    sqlite3_stmt *ins;
    check(db, sqlite3_prepare_v2(db, "INSERT INTO events(position, body) VALUES(?1, ?2)", -1, &ins, NULL), "prepare");

    double t0 = now_s();
    for (size_t i = 0; i < n;) {
        check(db, sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), "begin");
        size_t to = i + (size_t)batch < n ? i + (size_t)batch : n;
        for (; i < to; i++) {
            sqlite3_bind_int64(ins, 1, (sqlite3_int64)(i + 1));
            sqlite3_bind_text(ins, 2, lp[i], ll[i], SQLITE_STATIC);
            check(db, sqlite3_step(ins), "insert");
            sqlite3_reset(ins);
        }
        check(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), "commit");
    }
    double secs = now_s() - t0;
    sqlite3_finalize(ins);
    sqlite3_close(db);

    long long bytes = 0;
    char path[4096];
    const char *suffix[] = {"", "-wal"};
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s%s", dbpath, suffix[s]);
        if (stat(path, &st) == 0) bytes += (long long)st.st_size;
    }
    printf("{\"events\":%zu,\"seconds\":%.6f,\"events_per_s\":%.1f,\"db_bytes\":%lld}\n", n, secs,
           (double)n / secs, bytes);
    return 0;
}
