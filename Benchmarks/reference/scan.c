/*
 * scan: a raw LMDB cursor scan, the physical reference for `ledgerctl replay` (not part of ledgerd).
 *
 *   scan DATA_DIR [--db NAME]
 *
 * Opens the environment read-only (mdb_env_set_maxdbs(16), MDB_RDONLY), walks the named database
 * (default "events", where ledgerd and the reference appender keep the log) with MDB_NEXT in one
 * read transaction, counts the entries and their key and value bytes and reads the first and last
 * byte of every value (so every page is really touched), and prints one JSON object:
 * {"events":N,"bytes":B,"seconds":S,"events_per_s":R}. Nothing is decoded: this is the ceiling a
 * replay that parses and folds every event can be compared with.
 */
#define _GNU_SOURCE
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *name = "events";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc) name = argv[++i];
        else if (!dir && argv[i][0] != '-') dir = argv[i];
        else { fprintf(stderr, "usage: scan DATA_DIR [--db NAME]\n"); return 2; }
    }
    if (!dir) { fprintf(stderr, "usage: scan DATA_DIR [--db NAME]\n"); return 2; }
    double t0 = now_s();
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    int rc;
    if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_maxdbs(env, 16)) ||
        (rc = mdb_env_open(env, dir, MDB_RDONLY, 0600)) || (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) ||
        (rc = mdb_dbi_open(txn, name, 0, &dbi)) || (rc = mdb_cursor_open(txn, dbi, &cur))) {
        fprintf(stderr, "scan: %s: %s\n", dir, mdb_strerror(rc));
        return 1;
    }
    double t1 = now_s();
    uint64_t n = 0, bytes = 0, touch = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        n++;
        bytes += k.mv_size + v.mv_size;
        if (v.mv_size) touch += ((unsigned char *)v.mv_data)[0] + ((unsigned char *)v.mv_data)[v.mv_size - 1];
    }
    if (rc != MDB_NOTFOUND) { fprintf(stderr, "scan: %s\n", mdb_strerror(rc)); return 1; }
    double t2 = now_s();
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    double secs = t2 - t1;
    printf("{\"events\":%llu,\"bytes\":%llu,\"seconds\":%.6f,\"open_seconds\":%.6f,\"events_per_s\":%.1f,"
           "\"checksum\":%llu}\n",
           (unsigned long long)n, (unsigned long long)bytes, secs, t1 - t0, secs > 0 ? (double)n / secs : 0.0,
           (unsigned long long)touch);
    return 0;
}
