#!/usr/bin/env python3
"""The benchmark driver behind scripts/bench (issue 16). Standard library only.

scripts/bench installs the peers, builds ledgerd (release) and the C programs of Benchmarks/, then
runs this with --bin-dir and --tools-dir. It measures, side by side and in alternation, with the
median of --runs runs, every server on an empty directory:

  1. durable ingest into ledgerd over its socket (loadgen: 4 connections, batches of 1,000,
     --inflight requests in flight per connection) of the generated history with random UUIDv4
     event ids (--ids uuid, as intake systems that make their own idempotency keys send), then the
     same file into the C reference appender (raw LMDB, one commit per request), Redis Streams
     (XADD pipelined, appendfsync always) and SQLite (WAL, synchronous=FULL, in process), and at the
     end of the run into ledgerd again with `writer_threads = 1` instead of two;
  2. during ledgerd's UUID ingest, the round trip of a `status` request sent every 10 ms on a
     connection of its own (p50, p99, max): what a monitor sees while the daemon is loaded;
  3. `ledgerctl replay` of the UUID ledger against a raw LMDB cursor scan of the same directory;
  4. restart to ready on the UUID ledger, peak memory (VmHWM) at the end of the ingest, bytes of
     data.mdb per event, the time of `ledgerctl dump`;
  5. once, after the runs: the UUID history --scale times over in time (10,000,000 events by
     default) into ledgerd, then the reference: rate, peak memory, bytes written to disk;
  6. the same ingest with the generator's sequential ids (`sm-1-0000001`, in order: the id index
     appends), into ledgerd and Redis;
  7. one event per request, one request in flight: round trip p50/p99, ledgerd and the reference;
  8. 64 connections sending one event at a time (group commit), against 7's one connection.

It prints one table and writes it, with the machine, the date, the commit and the method, to
docs/PERFORMANCE.md (with --quick, to .build-bench/PERFORMANCE-quick.md unless --out is given),
with Benchmarks/MECHANISMS.md, if that file exists, copied in after the notes. Targets are reported,
never asserted: the exit code says only whether the benchmark itself ran.
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

EVENTS_PER_CASE = 3.066  # what scripts/generate-pilot-data gives on average


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ------------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------------

class Daemon:
    """A server process the benchmark started; readiness is a Unix socket accepting connections."""

    live = []

    def __init__(self, name, argv, sock, logfile, env=None, cwd=None, timeout=120.0):
        self.name, self.sock, self.logfile = name, sock, logfile
        with open(logfile, "ab") as lf:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf, env=env,
                                         cwd=cwd, start_new_session=True)
        Daemon.live.append(self)
        deadline = t0 + timeout
        while True:
            if can_connect(sock):
                self.ready_seconds = time.perf_counter() - t0
                return
            if self.proc.poll() is not None:
                Daemon.live.remove(self)
                raise BenchError(f"{name} exited with {self.proc.returncode} before it was ready:\n{tail(logfile)}")
            if time.perf_counter() > deadline:
                self.stop()
                raise BenchError(f"{name} was not ready after {timeout:.0f} s:\n{tail(logfile)}")
            time.sleep(0.001)

    @property
    def pid(self):
        return self.proc.pid

    def vm(self, field):
        """VmHWM, VmRSS, RssAnon, RssFile...: bytes, from /proc/PID/status."""
        return self.status()[field]

    def status(self):
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if v.strip().endswith(" kB"):
                    out[k] = int(v.split()[0]) * 1024
        if "VmHWM" not in out:
            raise BenchError(f"no VmHWM for {self.name}")
        return out

    def stop(self, timeout=180.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within {timeout:.0f} s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        if self in Daemon.live:
            Daemon.live.remove(self)
        return self.proc.returncode

    @classmethod
    def stop_all(cls):
        for d in list(cls.live):
            try:
                d.stop(timeout=30)
            except Exception as e:  # noqa: BLE001 - best effort on the way out
                log(f"could not stop {d.name}: {e}")


def can_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def tail(path, n=20):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no log)"


def request(sock, raw, timeout=60):
    """One request on a fresh connection, the first response line (bytes)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall(raw)
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf.split(b"\n", 1)[0]
    finally:
        s.close()


def run(argv, timeout, what, env=None, cwd=None):
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what}: no result within {timeout:.0f} s") from None
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        raise BenchError(f"{what} exited with {p.returncode}:\n{p.stderr.decode(errors='replace')[-3000:]}"
                         f"{p.stdout.decode(errors='replace')[-2000:]}")
    return p.stdout.decode(), p.stderr.decode(), secs


def json_line(out, what):
    for line in reversed(out.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"{what} printed no JSON result: {out[-500:]}")


def file_size(path):
    return os.stat(path).st_size if os.path.exists(path) else 0


def read_io(pid):
    """/proc/PID/io as integers (write_bytes: what the process had written to the disk)."""
    out = {}
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = int(v)
    except OSError:
        pass
    return out


class Samples:
    """/proc status samples of a daemon during an ingest that ran from `t_start` to `t_end`."""

    def __init__(self, samples, t_start, t_end, end, io):
        self.samples, self.t_start, self.t_end, self.end, self.io = samples, t_start, t_end, end, io

    def hwm_at(self, fraction):
        """VmHWM as it stood `fraction` of the way through the ingest's time, or None."""
        t = self.t_start + (self.t_end - self.t_start) * fraction
        early = [v["VmHWM"] for when, v in self.samples if when <= t]
        return early[-1] if early else None

    @property
    def anon_peak(self):
        return max([v.get("RssAnon", 0) for _, v in self.samples] + [self.end.get("RssAnon", 0)])


def nearest_rank(xs, p):
    """The p-th percentile of xs by nearest rank (the smallest value with at least p % at or below
    it), or None for no values."""
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


class StatusProber:
    """Sends `{"op":"status"}` to a daemon every `interval` seconds on a connection of its own, one
    request in flight (the answer line is read before the next is sent; a slow answer delays the
    next probe, it never piles them up), and records every round trip, from the write to the
    answer line read, until stopped. A probe with no answer within `timeout` is recorded with the
    time it waited (a lower bound) and the connection is opened again, so the prober can neither
    hang nor read a late answer as the next one's; any other socket error ends it (`error`)."""

    def __init__(self, sock, interval=0.010, timeout=5.0):
        self.sock, self.interval, self.timeout = sock, interval, timeout
        self.probes = []  # (perf_counter at the write, round trip in seconds, "ok":true in the answer; None: timeout)
        self.error = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.probe, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        """Ends probing after the probe in flight (at most `timeout` more)."""
        self.done.set()
        self.thread.join(self.timeout + 5)

    def probe(self):
        s, buf = None, b""
        try:
            while not self.done.is_set():
                if s is None:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(self.timeout)
                    s.connect(self.sock)
                    buf = b""
                t0 = time.perf_counter()
                try:
                    s.sendall(b'{"op":"status"}\n')
                    while b"\n" not in buf:
                        chunk = s.recv(65536)
                        if not chunk:
                            raise OSError("the daemon closed the status connection")
                        buf += chunk
                except socket.timeout:
                    self.probes.append((t0, time.perf_counter() - t0, None))
                    s.close()
                    s = None
                    continue
                t1 = time.perf_counter()
                line, buf = buf.split(b"\n", 1)
                self.probes.append((t0, t1 - t0, b'"ok":true' in line))
                # the next write `interval` after this one, or at once after a slower answer
                self.done.wait(max(0.0, t0 + self.interval - time.perf_counter()))
        except OSError as e:
            self.error = str(e)
        finally:
            if s is not None:
                s.close()

    def summary(self, t_from, t_to):
        """The probes written from `t_from` to `t_to` (perf_counter): count, p50/p99 (nearest rank)
        and max round trip in ms, timeouts, answers without "ok":true."""
        probes = [(rtt, ok) for t, rtt, ok in self.probes if t_from <= t <= t_to]
        rtts = [rtt for rtt, _ in probes]
        ms = lambda x: None if x is None else round(x * 1000, 3)  # noqa: E731
        return {"probes": len(rtts), "p50_ms": ms(nearest_rank(rtts, 50)), "p99_ms": ms(nearest_rank(rtts, 99)),
                "max_ms": ms(max(rtts) if rtts else None), "timeouts": sum(1 for _, ok in probes if ok is None),
                "not_ok": sum(1 for _, ok in probes if ok is False), "error": self.error}


def tree_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


# ------------------------------------------------------------------------------------------------
# the benchmark
# ------------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, a):
        self.a = a
        self.repo = os.path.abspath(a.repo)
        self.bin = os.path.abspath(a.bin_dir)
        self.tools = os.path.abspath(a.tools_dir)
        self.ledgerd = os.path.join(self.bin, "ledgerd")
        self.ledgerctl = os.path.join(self.bin, "ledgerctl")
        for p in (self.ledgerd, self.ledgerctl):
            if not os.access(p, os.X_OK):
                raise BenchError(f"{p} is missing; build it (swift build -c release) or set LEDGER_BIN_DIR")
        for t in ("loadgen", "appender", "scan", "sqlite_ingest"):
            if not os.access(os.path.join(self.tools, t), os.X_OK):
                raise BenchError(f"{self.tools}/{t} is missing; run scripts/bench, which compiles it")
        self.redis = shutil.which("redis-server")
        if not self.redis:
            raise BenchError("redis-server is not installed (apt-get install redis-server)")
        config = os.path.join(self.repo, "Config", "ledgerd.toml")
        self.config = [ "--config", config] if os.path.exists(config) else []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERD_")}
        self.work = tempfile.mkdtemp(prefix="ledger-bench-", dir=a.tmp_dir)
        try:
            self.one_writer_config = self.write_one_writer_config(config)
        except BenchError:
            shutil.rmtree(self.work, ignore_errors=True)
            raise
        self.results = {}  # key -> list of per-run values
        self.raw = []  # (run, what, dict)
        self.notes = []

    def write_one_writer_config(self, config):
        """A copy of the repository's configuration in the work directory with `writer_threads = 1`
        (one thread validates and writes in turn) instead of 2, for the one-writer-thread row."""
        try:
            with open(config) as f:
                text = f.read()
        except OSError as e:
            raise BenchError(f"cannot read {config} for the writer_threads = 1 copy: {e}") from None
        line = re.compile(r"^writer_threads = 2[ \t]*$", re.M)
        if len(line.findall(text)) != 1:
            raise BenchError(f"{config} has no single line `writer_threads = 2` to set to 1")
        path = os.path.join(self.work, "ledgerd-one-writer.toml")
        with open(path, "w") as f:
            f.write(line.sub("writer_threads = 1", text))
        return path

    def tool(self, name):
        return os.path.join(self.tools, name)

    def put(self, key, value):
        self.results.setdefault(key, []).append(value)

    def fresh(self, name):
        d = os.path.join(self.work, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    # --- the history ------------------------------------------------------------------------------
    def history(self):
        cases = max(1, round(self.a.events / EVENTS_PER_CASE))
        # Random UUIDv4 event ids, as intake systems that make their own idempotency keys send: the
        # id index takes random inserts. Most rows use this file.
        self.uuid_history_path = self.generate(cases, "uuid")
        # The same history with the generator's ids (`sm-1-0000001`, in order), the best case for
        # the id index (appends): the sequential rows, one event per request and 64 connections.
        self.history_path = self.generate(cases, "sequence")
        counts = []
        for path in (self.uuid_history_path, self.history_path):
            with open(path, "rb") as f:
                counts.append(sum(1 for line in f if line.strip()))
        if counts[0] != counts[1]:
            raise BenchError(f"{self.uuid_history_path} has {counts[0]} events, {self.history_path} {counts[1]}")
        self.cases, self.n_events = cases, counts[0]
        self.uuid_history_bytes = os.path.getsize(self.uuid_history_path)
        self.history_bytes = os.path.getsize(self.history_path)
        n = self.n_events
        log(f"history: {self.uuid_history_path}: {n:,} events, {self.uuid_history_bytes / n:.0f} bytes per event "
            f"as NDJSON (with sequential ids: {self.history_bytes / n:.0f})")

    def generate(self, cases, ids):
        gen = os.path.join(self.repo, "scripts", "generate-pilot-data")
        os.makedirs(self.a.data_cache, exist_ok=True)
        suffix = "" if ids == "sequence" else f"-{ids}"
        path = os.path.join(self.a.data_cache, f"pilot-seed1-cases{cases}{suffix}.ndjson")
        if not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(gen):
            log(f"generating the history: {cases:,} cases (about {round(cases * EVENTS_PER_CASE):,} events), ids: {ids}")
            tmp = path + ".tmp"
            run([sys.executable, gen, "--seed", "1", "--cases", str(cases), "--ids", ids, "--out", tmp], 3600,
                "generate-pilot-data")
            os.replace(tmp, path)
        return path

    # --- servers ----------------------------------------------------------------------------------
    def start_ledgerd(self, d, timeout=120.0, config=None):
        """ledgerd on `d`; `config` replaces the repository's Config/ledgerd.toml."""
        data, sock = os.path.join(d, "data"), os.path.join(d, "ledgerd.sock")
        conf = ["--config", config] if config else self.config
        return Daemon("ledgerd", [self.ledgerd, *conf, "--data-dir", data, "--socket", sock], sock,
                      os.path.join(d, "ledgerd.log"), env=self.env, cwd=d, timeout=timeout)

    def start_reference(self, d):
        data, sock = os.path.join(d, "data"), os.path.join(d, "appender.sock")
        return Daemon("appender", [self.tool("appender"), "--data-dir", data, "--socket", sock], sock,
                      os.path.join(d, "appender.log"))

    def start_redis(self, d):
        sock = os.path.join(d, "redis.sock")
        return Daemon("redis-server", [self.redis, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
                                       "--dir", d, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                                       "--daemonize", "no", "--logfile", os.path.join(d, "redis.log")],
                      sock, os.path.join(d, "redis.stdout"))

    def loadgen(self, sock, connections, batch, inflight, limit=None, latency=False, protocol="ledger", history=None):
        argv = [self.tool("loadgen"), "--socket", sock, "--file", history or self.history_path,
                "--connections", str(connections),
                "--batch", str(batch), "--inflight", str(inflight), "--timeout", str(self.a.timeout),
                "--protocol", protocol]
        if limit is not None:
            argv += ["--limit", str(limit)]
        if latency:
            argv.append("--latency")
        out, _, _ = run(argv, self.a.timeout + 60, f"loadgen against {protocol} {sock}")
        return json_line(out, "loadgen")

    def ledger_head(self, sock):
        st = json.loads(request(sock, b'{"op":"status"}\n'))
        if not st.get("ok"):
            raise BenchError(f"status failed: {st}")
        return st

    # --- 1, 2, 4, 6: ingest into ledgerd ---------------------------------------------------------
    def ingest_ledgerd(self, r, ids, writer_threads=2):
        """Ingests the history with `ids` ("uuid" or "sequence") into a fresh ledgerd, with
        `writer_threads` = 1 on the configuration that says so. The figures go under keys with
        `_uuid` (UUID ids) and `_1w` (one writer thread); the UUID ingests are probed with `status`
        (2). Returns the directory of the UUID ledger of two writer threads (replay, restart and
        dump run on it), None for the others (removed)."""
        uuid, one = ids == "uuid", writer_threads == 1
        x = ("_uuid" if uuid else "") + ("_1w" if one else "")
        d = self.fresh(f"run{r}-ledgerd{x}")
        log(f"run {r}: ingest into ledgerd ({self.n_events:,} events, {ids} ids, 4 x {self.a.batch} x "
            f"{self.a.inflight} in flight" + (", writer_threads = 1)" if one else ")")
            + (", status every 10 ms" if uuid else ""))
        dm = self.start_ledgerd(d, config=self.one_writer_config if one else None)
        try:
            res, s, probe = self.sampled_ingest(dm, self.uuid_history_path if uuid else self.history_path,
                                                probe=uuid)
            st = self.ledger_head(dm.sock)
        finally:
            rc = dm.stop()
        if rc != 0:
            self.notes.append(f"run {r}: ledgerd exited with {rc} on SIGTERM after the ingest{x}")
        if st.get("head") != self.n_events or res["duplicates"]:
            raise BenchError(f"ledgerd head {st.get('head')} after ingesting {self.n_events} events "
                             f"({res['duplicates']} duplicates)")
        hwm, hwm_half = s.end["VmHWM"], s.hwm_at(0.5)
        data_bytes = file_size(os.path.join(d, "data", "data.mdb"))
        self.put(f"ingest_ledgerd{x}", res["events_per_s"])
        self.put(f"ingest_ledgerd{x}_p50_ms", res["p50_us"] / 1000)
        self.put(f"hwm_ledgerd{x}_mib", hwm / 2**20)
        if hwm_half is not None:
            self.put(f"hwm_ledgerd{x}_half_mib", hwm_half / 2**20)
        self.put(f"anon_peak_ledgerd{x}_mib", s.anon_peak / 2**20)
        self.put(f"rssfile_end_ledgerd{x}_mib", s.end.get("RssFile", 0) / 2**20)
        self.put(f"bytes_ledgerd{x}", data_bytes / self.n_events)
        if probe is not None:
            self.put(f"status{x}_probes", probe["probes"])
            for k in ("p50_ms", "p99_ms", "max_ms"):
                if probe[k] is not None:
                    self.put(f"status{x}_{k}", probe[k])
            if probe["error"] or probe["timeouts"] or probe["not_ok"] or not probe["probes"]:
                self.notes.append(f"run {r}: the status prober during the ingest{x}: {probe['probes']} probes, "
                                  f"{probe['timeouts']} timed out, {probe['not_ok']} not ok"
                                  + (f", stopped by: {probe['error']}" if probe["error"] else ""))
        self.raw.append((r, f"ingest ledgerd{x}", {**res, "vm_hwm_bytes": hwm, "vm_hwm_half_bytes": hwm_half,
                                                    "data_mdb_bytes": data_bytes, "commits": st.get("commits"),
                                                    "status_probe": probe}))
        if uuid and not one:
            return d
        shutil.rmtree(d, ignore_errors=True)
        return None

    def sampled_ingest(self, dm, history, probe=False):
        """The ingest of `history` into the daemon `dm`, its /proc status sampled every 50 ms (to see
        how the peak grows with the log) and, with `probe`, a `status` request sent every 10 ms on a
        connection of its own. Returns loadgen's result, the `Samples` and the prober's summary of
        the probes written while the load ran (None without `probe`)."""
        samples, done = [], threading.Event()

        def sample():
            while not done.wait(0.05):
                try:
                    samples.append((time.perf_counter(), dm.status()))
                except (OSError, BenchError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        prober = StatusProber(dm.sock) if probe else None
        try:
            t_start = time.perf_counter()
            sampler.start()
            if prober:
                prober.start()
            res = self.loadgen(dm.sock, 4, self.a.batch, self.a.inflight, history=history)
            t_end = time.perf_counter()
        finally:
            done.set()
            if prober:
                prober.stop()
            sampler.join()
        # loadgen connects and builds its requests before its clock starts; the load is its
        # `seconds` up to the moment it returned.
        summary = prober.summary(t_end - res["seconds"], t_end) if prober else None
        return res, Samples(samples, t_start, t_end, dm.status(), read_io(dm.pid)), summary

    # --- 1: the peers, on the UUID file ------------------------------------------------------------
    def ingest_reference(self, r):
        d = self.fresh(f"run{r}-reference")
        log(f"run {r}: ingest into the C reference (UUID ids)")
        dm = self.start_reference(d)
        try:
            res = self.loadgen(dm.sock, 4, self.a.batch, self.a.inflight, history=self.uuid_history_path)
            hwm = dm.vm("VmHWM")
            head = json.loads(request(dm.sock, b'{"op":"status"}\n')).get("head")
        finally:
            dm.stop()
        if head != self.n_events:
            raise BenchError(f"reference head {head} after {self.n_events} events")
        data_bytes = file_size(os.path.join(d, "data", "data.mdb"))
        self.put("ingest_ref", res["events_per_s"])
        self.put("ingest_ref_p50_ms", res["p50_us"] / 1000)
        self.put("hwm_ref_mib", hwm / 2**20)
        self.put("bytes_ref", data_bytes / self.n_events)
        self.raw.append((r, "ingest reference", {**res, "vm_hwm_bytes": hwm, "data_mdb_bytes": data_bytes}))
        return d

    def ingest_redis(self, r, ids):
        """Redis fed the history with `ids`; the UUID figures under `…_uuid`."""
        x = "_uuid" if ids == "uuid" else ""
        d = self.fresh(f"run{r}-redis{x}")
        log(f"run {r}: ingest into Redis Streams (appendfsync always, {ids} ids)")
        dm = self.start_redis(d)
        try:
            res = self.loadgen(dm.sock, 4, self.a.batch, self.a.inflight, protocol="redis",
                               history=self.uuid_history_path if x else self.history_path)
            hwm = dm.vm("VmHWM")
            xlen = request(dm.sock, b"*2\r\n$4\r\nXLEN\r\n$6\r\nevents\r\n").strip()
        finally:
            dm.stop()
        if xlen != b":%d" % self.n_events:
            raise BenchError(f"redis XLEN {xlen!r} after {self.n_events} events")
        aof = tree_size(os.path.join(d, "appendonlydir")) if os.path.isdir(os.path.join(d, "appendonlydir")) \
            else file_size(os.path.join(d, "appendonly.aof"))
        self.put(f"ingest_redis{x}", res["events_per_s"])
        self.put(f"bytes_redis{x}", aof / self.n_events)
        self.put(f"hwm_redis{x}_mib", hwm / 2**20)
        self.raw.append((r, f"ingest redis{x}", {**res, "vm_hwm_bytes": hwm, "aof_bytes": aof}))
        shutil.rmtree(d, ignore_errors=True)

    def ingest_sqlite(self, r):
        d = self.fresh(f"run{r}-sqlite")
        log(f"run {r}: ingest into SQLite (WAL, synchronous=FULL, in process, UUID ids)")
        out, _, _ = run([self.tool("sqlite_ingest"), "--db", os.path.join(d, "events.db"), "--file",
                         self.uuid_history_path, "--batch", str(self.a.batch)], self.a.timeout, "sqlite_ingest")
        res = json_line(out, "sqlite_ingest")
        if res["events"] != self.n_events:
            raise BenchError(f"sqlite stored {res['events']} events of {self.n_events}")
        self.put("ingest_sqlite", res["events_per_s"])
        self.put("bytes_sqlite", res["db_bytes"] / self.n_events)
        self.raw.append((r, "ingest sqlite", res))
        shutil.rmtree(d, ignore_errors=True)

    # --- 3, 4: replay, restart, report on the UUID ledger ------------------------------------------
    def scan(self, data, r, key):
        out, _, _ = run([self.tool("scan"), data], 600, "scan")
        res = json_line(out, "scan")
        if res["events"] != self.n_events:
            raise BenchError(f"scan found {res['events']} events in {data}, expected {self.n_events}")
        self.put(key, res["events_per_s"])
        self.raw.append((r, f"scan {key}", res))
        return res

    def replay(self, data, r):
        out, err, wall = run([self.ledgerctl, "replay", "--data-dir", data], 3600, "ledgerctl replay", env=self.env)
        m = re.search(r"replay: (\d+) events in ([0-9.]+) s \((\d+) events/s\)", out)
        if not m:
            raise BenchError(f"cannot read ledgerctl replay's output: {out[-500:]}")
        if int(m.group(1)) != self.n_events:
            raise BenchError(f"replay saw {m.group(1)} events, expected {self.n_events}")
        eps = int(m.group(3))
        if "identical" not in out:
            self.notes.append(f"run {r}: ledgerctl replay did not say the projections were identical: {out.strip()}")
        self.put("replay_ledgerd", eps)
        self.put("replay_wall_s", wall)
        self.raw.append((r, "replay", {"events": int(m.group(1)), "seconds": float(m.group(2)), "events_per_s": eps,
                                       "wall_seconds": round(wall, 3)}))

    def after_ingest(self, d, ref_dir, r):
        data = os.path.join(d, "data")
        log(f"run {r}: replay of the UUID ledger against a raw LMDB scan, restart, report")
        # alternate: scan, replay, scan (the faster scan of the run is kept)
        s1 = self.scan(data, r, "_scan")["events_per_s"]
        self.replay(data, r)
        s2 = self.scan(data, r, "_scan")["events_per_s"]
        self.put("scan_ledgerd", max(s1, s2))
        self.results.pop("_scan", None)
        self.scan(os.path.join(ref_dir, "data"), r, "scan_ref")
        # restart to ready on the whole ledger
        dm = self.start_ledgerd(d)
        restart = dm.ready_seconds
        try:
            st = self.ledger_head(dm.sock)
        finally:
            dm.stop()
        if st.get("head") != self.n_events:
            raise BenchError(f"after the restart ledgerd's head is {st.get('head')}")
        self.put("restart_s", restart)
        # the report
        out_dir = os.path.join(d, "dump")
        _, _, secs = run([self.ledgerctl, "dump", "--data-dir", data, "--out", out_dir], 3600, "ledgerctl dump",
                         env=self.env)
        if not os.path.exists(os.path.join(out_dir, "report.json")):
            raise BenchError("ledgerctl dump wrote no report.json")
        self.put("report_s", secs)
        self.raw.append((r, "restart and report", {"restart_seconds": round(restart, 4), "dump_seconds": round(secs, 3)}))

    # --- 7, 8: one event per request ---------------------------------------------------------------
    def one_by_one(self, r, who, connections, limit, key):
        d = self.fresh(f"run{r}-{who}-{connections}")
        dm = self.start_ledgerd(d) if who == "ledgerd" else self.start_reference(d)
        try:
            res = self.loadgen(dm.sock, connections, 1, 1, limit=limit, latency=connections == 1)
        finally:
            dm.stop()
        self.put(f"{key}_eps", res["events_per_s"])
        if connections == 1:
            self.put(f"{key}_p50_us", res["p50_us"])
            self.put(f"{key}_p99_us", res["p99_us"])
        self.raw.append((r, f"{who}: {connections} connection(s), 1 event per request, 1 in flight", res))
        shutil.rmtree(d, ignore_errors=True)
        return res

    def one_run(self, r):
        # UUID ids first: ledgerd (probed with status), then its peers on the same file; then the
        # sequential ids (ledgerd, Redis); then ledgerd with one writer thread; so across runs
        # ledgerd and its peers alternate.
        d = self.ingest_ledgerd(r, "uuid")
        ref = self.ingest_reference(r)
        self.ingest_redis(r, "uuid")
        self.ingest_sqlite(r)
        self.ingest_ledgerd(r, "sequence")
        self.ingest_redis(r, "sequence")
        self.ingest_ledgerd(r, "uuid", writer_threads=1)
        self.after_ingest(d, ref, r)
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(ref, ignore_errors=True)
        L, F = self.a.latency_events, self.a.fanin_events
        log(f"run {r}: one event per request, one in flight ({L:,} events), ledgerd then the reference")
        self.one_by_one(r, "ledgerd", 1, L, "one_ledgerd")
        self.one_by_one(r, "reference", 1, L, "one_ref")
        log(f"run {r}: 64 connections, one event per request ({F:,} events to ledgerd, {L:,} to the reference)")
        self.one_by_one(r, "ledgerd", 64, F, "fanin_ledgerd")
        self.one_by_one(r, "reference", 64, L, "fanin_ref")
        # ratios of this run
        R = self.results
        self.put("ratio_ingest_uuid_redis", R["ingest_ledgerd_uuid"][-1] / R["ingest_redis_uuid"][-1])
        self.put("ratio_ingest_uuid_ref", R["ingest_ledgerd_uuid"][-1] / R["ingest_ref"][-1])
        self.put("ratio_ingest_uuid_sqlite", R["ingest_ledgerd_uuid"][-1] / R["ingest_sqlite"][-1])
        self.put("ratio_one_writer", R["ingest_ledgerd_uuid_1w"][-1] / R["ingest_ledgerd_uuid"][-1])
        self.put("ratio_ingest_redis", R["ingest_ledgerd"][-1] / R["ingest_redis"][-1])
        self.put("ratio_p50", R["one_ledgerd_p50_us"][-1] / R["one_ref_p50_us"][-1])
        self.put("ratio_p99", R["one_ledgerd_p99_us"][-1] / R["one_ref_p99_us"][-1])
        self.put("ratio_fanin", R["fanin_ledgerd_eps"][-1] / R["one_ledgerd_eps"][-1])
        self.put("ratio_fanin_ref", R["fanin_ref_eps"][-1] / R["one_ref_eps"][-1])
        self.put("ratio_replay", R["replay_ledgerd"][-1] / R["scan_ledgerd"][-1])
        self.put("ratio_bytes", R["bytes_ledgerd_uuid"][-1] / R["bytes_ref"][-1])
        self.put("ratio_hwm", R["hwm_ledgerd_uuid_mib"][-1] / R["hwm_ref_mib"][-1])

    # --- 5: one ingest of the UUID history several times over -------------------------------------
    def repeat_history(self, copies):
        """The UUID history `copies` times over, one copy after another in time: copy c is shifted
        by c times the history's span (first to last `at`, in whole days, so only the dates of `at`
        and `scheduled_for` change), its case ids get the copy's number (`C-…` -> `C<c>-…`) and its
        event ids new first 8 hex digits, blake2b(first 8 + the byte c, 4 bytes), so they stay
        UUID-shaped and unique. A log that grows at the pilot's pace for `copies` times as long:
        as many cases active at a time. Cached beside the history."""
        if not 1 <= copies < 256:
            raise BenchError(f"--scale {copies}: the copies are numbered by one byte, so 1 to 255")
        src = self.uuid_history_path
        path = os.path.join(self.a.data_cache, os.path.basename(src)[:-len(".ndjson")] + f"-x{copies}.ndjson")
        if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(src):
            return path
        log(f"writing the UUID history {copies} times over in time: {path}")
        with open(src, "rb") as f:
            lines = [line.rstrip(b"\n") for line in f if line.strip()]
        # Every line starts with its id (as generate-pilot-data writes it): {"id":"xxxxxxxx-…
        head = re.compile(rb'\{"id":"[0-9a-f]{8}-')
        for i, line in enumerate(lines):
            if not head.match(line):
                raise BenchError(f"{src}:{i + 1} does not start with a UUID id: {line[:60]!r}")
        # The new first 8 hex digits of every copy, checked against the other copies of the same
        # event (the rest of the id, 90 random bits, keeps different events apart).
        prefixes = [None] + [bytearray() for _ in range(1, copies)]
        for i, line in enumerate(lines):
            first8 = line[7:15]
            seen = {bytes.fromhex(first8.decode())}
            for c in range(1, copies):
                h = hashlib.blake2b(first8 + bytes([c]), digest_size=4).digest()
                if h in seen:
                    raise BenchError(f"copy {c} of event {i + 1} of {src} would repeat an id of another copy; "
                                     f"choose another --scale")
                seen.add(h)
                prefixes[c] += h

        at = re.compile(rb'"at":"(\d{4}-\d{2}-\d{2})')
        first, last = (datetime.date.fromisoformat(at.search(x).group(1).decode()) for x in (lines[0], lines[-1]))
        span = datetime.timedelta(days=(last - first).days + 1)
        stamp = re.compile(rb'"(at|scheduled_for)":"(\d{4}-\d{2}-\d{2})')
        tmp = path + ".tmp"
        with open(tmp, "wb") as out:
            for c in range(copies):
                if c == 0:
                    out.writelines(line + b"\n" for line in lines)
                    continue
                dates = {}  # original date -> shifted, for this copy

                def shifted(m):
                    d = m.group(2)
                    if d not in dates:
                        dates[d] = (datetime.date.fromisoformat(d.decode()) + span * c).isoformat().encode()
                    return b'"' + m.group(1) + b'":"' + dates[d]

                pre = prefixes[c]
                for i, line in enumerate(lines):
                    line = line[:7] + pre[4 * i:4 * i + 4].hex().encode() + line[15:]
                    line = line.replace(b'"case":"C-', b'"case":"C%d-' % c, 1)
                    out.write(stamp.sub(shifted, line) + b"\n")
        os.replace(tmp, path)
        return path

    def scale(self):
        """Once, after the runs: the UUID history `--scale` times over in time into ledgerd (peak
        memory sampled, bytes written), then into the C reference for the rate's ratio."""
        path = self.repeat_history(self.a.scale)
        with open(path, "rb") as f:
            n = sum(1 for line in f if line.strip())
        self.scale_events = n
        d = self.fresh("scale-ledgerd")
        log(f"scale: ingest into ledgerd ({n:,} events, the UUID history {self.a.scale} times over)")
        dm = self.start_ledgerd(d)
        try:
            res, s, _ = self.sampled_ingest(dm, path)
            st = self.ledger_head(dm.sock)
        finally:
            rc = dm.stop()
        if rc != 0:
            self.notes.append(f"scale: ledgerd exited with {rc} on SIGTERM after the ingest")
        if st.get("head") != n or res["duplicates"]:
            raise BenchError(f"ledgerd head {st.get('head')} after ingesting {n} events ({res['duplicates']} duplicates)")
        data_bytes = file_size(os.path.join(d, "data", "data.mdb"))
        shutil.rmtree(d, ignore_errors=True)
        self.put("scale_ledgerd", res["events_per_s"])
        self.put("scale_hwm_mib", s.end["VmHWM"] / 2**20)
        for q in (1, 2, 3):
            h = s.hwm_at(q / 4)
            if h is not None:
                self.put(f"scale_hwm_q{q}_mib", h / 2**20)
        self.put("scale_anon_peak_mib", s.anon_peak / 2**20)
        self.put("scale_bytes", data_bytes / n)
        if s.io.get("write_bytes") is not None:
            self.put("scale_written_per_event", s.io["write_bytes"] / n)
        self.raw.append((0, "scale ledgerd", {**res, "events": n, "vm_hwm_bytes": s.end["VmHWM"],
                                              "data_mdb_bytes": data_bytes, "io": s.io}))
        d = self.fresh("scale-reference")
        log(f"scale: ingest into the C reference ({n:,} events)")
        dm = self.start_reference(d)
        try:
            ref = self.loadgen(dm.sock, 4, self.a.batch, self.a.inflight, history=path)
        finally:
            dm.stop()
        shutil.rmtree(d, ignore_errors=True)
        self.put("scale_ref", ref["events_per_s"])
        self.put("ratio_scale_ref", res["events_per_s"] / ref["events_per_s"])
        self.raw.append((0, "scale reference", {**ref, "events": n}))

    def machine(self):
        def cpuinfo(key):
            try:
                with open("/proc/cpuinfo") as f:
                    for line in f:
                        if line.startswith(key):
                            return line.split(":", 1)[1].strip()
            except OSError:
                pass
            return "?"

        mem = "?"
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
        except OSError:
            pass
        fs = "?"
        try:
            out = subprocess.run(["df", "-T", self.work], stdout=subprocess.PIPE, text=True).stdout.splitlines()[-1].split()
            fs = f"{out[1]} on {out[0]}"
        except (OSError, IndexError):
            pass

        def version(cmd):
            try:
                return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout.strip()
            except OSError:
                return "?"

        def pkg(name):
            return version(["dpkg-query", "-W", "-f=${Version}", name]) or "?"

        def git(*args, where=None):
            try:
                return subprocess.run(["git", "-C", where or self.repo, *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True).stdout.strip()
            except OSError:
                return ""

        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
        bin_repo = os.path.dirname(os.path.dirname(self.bin))  # <repo>/.build/release
        bin_commit = git("rev-parse", "--short=12", "HEAD", where=bin_repo) if os.path.isdir(bin_repo) else ""
        bin_dirty = " (with uncommitted changes)" if bin_commit and git("status", "--porcelain", "--untracked-files=no",
                                                                          where=bin_repo) else ""
        return {
            "cpu": f"{os.cpu_count()} x {cpuinfo('model name')}",
            "nproc": version(["nproc"]),
            "memory": mem,
            "kernel": platform.release(),
            "os": version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
            "filesystem": fs,
            "swift": version(["sh", "-c", "swift --version 2>/dev/null | head -1"]),
            "cc": version(["sh", "-c", "cc --version | head -1"]),
            "lmdb": pkg("liblmdb0"),
            "redis": pkg("redis-server"),
            "sqlite": pkg("libsqlite3-0"),
            "commit": commit + dirty,
            "binaries": self.bin + (f" (built from {bin_commit}{bin_dirty})" if bin_commit else ""),
        }


# ------------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else None


def fmt_rate(x):
    return "n/a" if x is None else f"{x:,.0f} ev/s"


def fmt_us(x):
    return "n/a" if x is None else f"{x:,.0f} µs"


def fmt_ms(x):
    return "n/a" if x is None else f"{x:,.2f} ms"


def fmt_s(x):
    return "n/a" if x is None else (f"{x * 1000:,.1f} ms" if x < 1 else f"{x:,.2f} s")


def fmt_mib(x):
    return "n/a" if x is None else f"{x:,.1f} MiB"


def fmt_b(x):
    return "n/a" if x is None else f"{x:,.0f} B"


def fmt_ratio(x):
    # Three digits below 1: a median of 0.397 printed as "0.40" next to "no" reads as a mistake.
    return "" if x is None else (f"{x:.3f} ×" if x < 1 else f"{x:.2f} ×")


def rows(b):
    R = {k: v for k, v in b.results.items()}
    g = lambda k: med(R.get(k, []))  # noqa: E731
    a = b.a
    met = lambda ok: "n/a" if ok is None else ("yes" if ok else "no")  # noqa: E731
    ge = lambda x, t: None if x is None else x >= t  # noqa: E731
    le = lambda x, t: None if x is None else x <= t  # noqa: E731
    lt = lambda x, t: None if x is None else x < t  # noqa: E731
    ingest = f"durable ingest, 4 conn × {a.batch:,}/request, {a.inflight} in flight"
    return [
        (f"1. {ingest}, random UUIDv4 ids: against Redis Streams (XADD pipelined, appendfsync always)",
         fmt_rate(g("ingest_ledgerd_uuid")),
         "Redis " + fmt_rate(g("ingest_redis_uuid")), fmt_ratio(g("ratio_ingest_uuid_redis")), "≥ 1.3 × Redis",
         met(ge(g("ratio_ingest_uuid_redis"), 1.3))),
        ("1. the same against the C reference (raw LMDB, one commit per request)", fmt_rate(g("ingest_ledgerd_uuid")),
         "C reference " + fmt_rate(g("ingest_ref")), fmt_ratio(g("ratio_ingest_uuid_ref")), "≥ 0.40 × reference",
         met(ge(g("ratio_ingest_uuid_ref"), 0.40))),
        ("1. the same against SQLite (WAL, synchronous=FULL, in process, 1 writer)",
         fmt_rate(g("ingest_ledgerd_uuid")), "SQLite " + fmt_rate(g("ingest_sqlite")),
         fmt_ratio(g("ratio_ingest_uuid_sqlite")), "—", "—"),
        ("1. the same with one writer thread instead of two (`writer_threads = 1`)",
         fmt_rate(g("ingest_ledgerd_uuid_1w")), "two writer threads " + fmt_rate(g("ingest_ledgerd_uuid")),
         fmt_ratio(g("ratio_one_writer")), "—", "—"),
        ("2. `status` round trip during the UUIDv4 ingest (every 10 ms, own connection): p99",
         fmt_ms(g("status_uuid_p99_ms")) + f" (p50 {fmt_ms(g('status_uuid_p50_ms'))}, "
                                           f"max {fmt_ms(g('status_uuid_max_ms'))})",
         "—", "", "< 10 ms", met(lt(g("status_uuid_p99_ms"), 10.0))),
        ("3. `ledgerctl replay` of the UUIDv4 ledger, all projections", fmt_rate(g("replay_ledgerd")),
         "raw LMDB cursor scan " + fmt_rate(g("scan_ledgerd")), fmt_ratio(g("ratio_replay")),
         "≥ 1,500,000 ev/s", met(ge(g("replay_ledgerd"), 1_500_000))),
        (f"4. restart to ready on the UUIDv4 ledger ({b.n_events:,} events)", fmt_s(g("restart_s")), "—", "", "< 1 s",
         met(lt(g("restart_s"), 1.0))),
        ("4. peak memory (VmHWM) at the end of the UUIDv4 ingest", fmt_mib(g("hwm_ledgerd_uuid_mib")) +
         f" (half-way: {fmt_mib(g('hwm_ledgerd_uuid_half_mib'))}; peak anonymous: "
         f"{fmt_mib(g('anon_peak_ledgerd_uuid_mib'))})",
         "C reference " + fmt_mib(g("hwm_ref_mib")), fmt_ratio(g("ratio_hwm")), "≤ 256 MiB",
         met(le(g("hwm_ledgerd_uuid_mib"), 256.0))),
        ("4. bytes on disk per event (data.mdb), UUIDv4 ids", fmt_b(g("bytes_ledgerd_uuid")),
         f"C reference {fmt_b(g('bytes_ref'))}; Redis appendonlydir {fmt_b(g('bytes_redis_uuid'))}; "
         f"SQLite {fmt_b(g('bytes_sqlite'))}",
         fmt_ratio(g("ratio_bytes")), "—", "—"),
        (f"4. time to produce the report (`ledgerctl dump`, UUIDv4 ledger, {b.n_events:,} events)",
         fmt_s(g("report_s")), "—", "", "—", "—"),
    ] + scale_rows(b, g, met, le) + [
        (f"6. {ingest}, sequential ids (`sm-1-…`): against Redis Streams (the same file)",
         fmt_rate(g("ingest_ledgerd")), "Redis " + fmt_rate(g("ingest_redis")), fmt_ratio(g("ratio_ingest_redis")),
         "≥ 1.5 × Redis", met(ge(g("ratio_ingest_redis"), 1.5))),
        ("6. peak memory (VmHWM) at the end of the ingest with sequential ids", fmt_mib(g("hwm_ledgerd_mib")) +
         f" (half-way: {fmt_mib(g('hwm_ledgerd_half_mib'))}; peak anonymous: {fmt_mib(g('anon_peak_ledgerd_mib'))})",
         "—", "", "≤ 256 MiB", met(le(g("hwm_ledgerd_mib"), 256.0))),
        ("7. one event per request, 1 in flight: p50 round trip", fmt_us(g("one_ledgerd_p50_us")),
         "C reference " + fmt_us(g("one_ref_p50_us")), fmt_ratio(g("ratio_p50")), "≤ 1.5 × reference",
         met(le(g("ratio_p50"), 1.5))),
        ("7. one event per request, 1 in flight: p99 round trip", fmt_us(g("one_ledgerd_p99_us")),
         "C reference " + fmt_us(g("one_ref_p99_us")), fmt_ratio(g("ratio_p99")), "—", "—"),
        ("8. 64 connections × 1 event per request (group commit)", fmt_rate(g("fanin_ledgerd_eps")),
         "ledgerd, 1 connection " + fmt_rate(g("one_ledgerd_eps")), fmt_ratio(g("ratio_fanin")),
         "≥ 10 × one connection", met(ge(g("ratio_fanin"), 10.0))),
        ("8. (for comparison) the C reference, no group commit, 64 vs 1 connection", fmt_rate(g("fanin_ref_eps")),
         "reference, 1 connection " + fmt_rate(g("one_ref_eps")), fmt_ratio(g("ratio_fanin_ref")), "—", "—"),
    ]


def scale_rows(b, g, met, le):
    """The rows of the ingest of the UUID history `--scale` times over, if it ran."""
    if g("scale_ledgerd") is None:
        return []
    n, hwm = b.scale_events, g("scale_hwm_mib")
    what = f"the UUIDv4 history {b.a.scale} times over in time ({n:,} events, 1 run)"
    quarters = ", ".join(fmt_mib(g(f"scale_hwm_q{q}_mib")) for q in (1, 2, 3))
    return [
        (f"5. ingest of {what}: rate", fmt_rate(g("scale_ledgerd")), "C reference " + fmt_rate(g("scale_ref")),
         fmt_ratio(g("ratio_scale_ref")), "—", "—"),
        (f"5. peak memory (VmHWM) at {n:,} UUIDv4 events",
         f"{fmt_mib(hwm)} (at ¼, ½, ¾ of the time: {quarters}; peak anonymous: {fmt_mib(g('scale_anon_peak_mib'))})",
         f"ledgerd at {b.n_events:,}: {fmt_mib(g('hwm_ledgerd_uuid_mib'))}", "", "≤ 256 MiB", met(le(hwm, 256.0))),
        (f"5. bytes written to disk per event at {n:,} events (/proc/PID/io)", fmt_b(g("scale_written_per_event")),
         f"data.mdb {fmt_b(g('scale_bytes'))} per event", "", "—", "—"),
    ]


def table(b):
    head = ("measure", "ledgerd", "reference / peer", "ratio", "target", "met?")
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for r in rows(b):
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def runs_table(b):
    labels = [
        ("ingest_ledgerd_uuid", "ingest ledgerd, UUIDv4 ids (ev/s)", "{:,.0f}"),
        ("ingest_ref", "ingest C reference, UUIDv4 file (ev/s)", "{:,.0f}"),
        ("ingest_redis_uuid", "ingest Redis, UUIDv4 file (ev/s)", "{:,.0f}"),
        ("ingest_sqlite", "ingest SQLite, UUIDv4 file (ev/s)", "{:,.0f}"),
        ("ingest_ledgerd", "ingest ledgerd, sequential ids (ev/s)", "{:,.0f}"),
        ("ingest_redis", "ingest Redis, sequential file (ev/s)", "{:,.0f}"),
        ("ingest_ledgerd_uuid_1w", "ingest ledgerd, UUIDv4 ids, writer_threads = 1 (ev/s)", "{:,.0f}"),
        ("ingest_ledgerd_uuid_p50_ms", "ingest ledgerd, UUIDv4 ids, p50 per request of the batch (ms)", "{:,.1f}"),
        ("ingest_ledgerd_p50_ms", "ingest ledgerd, sequential ids, p50 per request (ms)", "{:,.1f}"),
        ("ingest_ref_p50_ms", "ingest C reference, p50 per request (ms)", "{:,.1f}"),
        ("status_uuid_probes", "status during the UUIDv4 ingest, probes", "{:,.0f}"),
        ("status_uuid_p50_ms", "status during the UUIDv4 ingest, p50 (ms)", "{:,.2f}"),
        ("status_uuid_p99_ms", "status during the UUIDv4 ingest, p99 (ms)", "{:,.2f}"),
        ("status_uuid_max_ms", "status during the UUIDv4 ingest, max (ms)", "{:,.2f}"),
        ("status_uuid_1w_p50_ms", "status during the writer_threads = 1 ingest, p50 (ms)", "{:,.2f}"),
        ("status_uuid_1w_p99_ms", "status during the writer_threads = 1 ingest, p99 (ms)", "{:,.2f}"),
        ("status_uuid_1w_max_ms", "status during the writer_threads = 1 ingest, max (ms)", "{:,.2f}"),
        ("replay_ledgerd", "ledgerctl replay of the UUIDv4 ledger (ev/s, as it reports)", "{:,.0f}"),
        ("replay_wall_s", "ledgerctl replay, whole process (s)", "{:,.2f}"),
        ("scan_ledgerd", "LMDB scan of ledgerd's UUIDv4 log (ev/s)", "{:,.0f}"),
        ("scan_ref", "LMDB scan of the reference's log (ev/s)", "{:,.0f}"),
        ("restart_s", "restart to ready, UUIDv4 ledger (s)", "{:,.3f}"),
        ("report_s", "ledgerctl dump, UUIDv4 ledger (s)", "{:,.2f}"),
        ("hwm_ledgerd_uuid_half_mib", "VmHWM ledgerd half-way, UUIDv4 ids (MiB)", "{:,.1f}"),
        ("hwm_ledgerd_uuid_mib", "VmHWM ledgerd at the end, UUIDv4 ids (MiB)", "{:,.1f}"),
        ("anon_peak_ledgerd_uuid_mib", "RssAnon ledgerd, highest sample, UUIDv4 ids (MiB)", "{:,.1f}"),
        ("rssfile_end_ledgerd_uuid_mib", "RssFile ledgerd at the end, UUIDv4 ids (mapped LMDB pages, MiB)", "{:,.1f}"),
        ("hwm_ledgerd_uuid_1w_mib", "VmHWM ledgerd at the end, writer_threads = 1 (MiB)", "{:,.1f}"),
        ("hwm_ledgerd_half_mib", "VmHWM ledgerd half-way, sequential ids (MiB)", "{:,.1f}"),
        ("hwm_ledgerd_mib", "VmHWM ledgerd at the end, sequential ids (MiB)", "{:,.1f}"),
        ("anon_peak_ledgerd_mib", "RssAnon ledgerd, highest sample, sequential ids (MiB)", "{:,.1f}"),
        ("hwm_ref_mib", "VmHWM reference (MiB)", "{:,.1f}"),
        ("hwm_redis_uuid_mib", "VmHWM Redis, UUIDv4 file (MiB)", "{:,.1f}"),
        ("hwm_redis_mib", "VmHWM Redis, sequential file (MiB)", "{:,.1f}"),
        ("bytes_ledgerd_uuid", "data.mdb bytes/event ledgerd, UUIDv4 ids", "{:,.0f}"),
        ("bytes_ledgerd", "data.mdb bytes/event ledgerd, sequential ids", "{:,.0f}"),
        ("bytes_ref", "data.mdb bytes/event reference", "{:,.0f}"),
        ("bytes_redis_uuid", "appendonlydir bytes/event Redis, UUIDv4 file", "{:,.0f}"),
        ("bytes_sqlite", "database bytes/event SQLite", "{:,.0f}"),
        ("one_ledgerd_p50_us", "1 event/request ledgerd p50 (µs)", "{:,.0f}"),
        ("one_ledgerd_p99_us", "1 event/request ledgerd p99 (µs)", "{:,.0f}"),
        ("one_ref_p50_us", "1 event/request reference p50 (µs)", "{:,.0f}"),
        ("one_ref_p99_us", "1 event/request reference p99 (µs)", "{:,.0f}"),
        ("one_ledgerd_eps", "1 connection ledgerd (ev/s)", "{:,.0f}"),
        ("fanin_ledgerd_eps", "64 connections ledgerd (ev/s)", "{:,.0f}"),
        ("one_ref_eps", "1 connection reference (ev/s)", "{:,.0f}"),
        ("fanin_ref_eps", "64 connections reference (ev/s)", "{:,.0f}"),
    ] + [
        (f"scale_{key}", f"UUIDv4 history {b.a.scale} times over (once): {what}", f)
        for key, what, f in (("ledgerd", "ingest ledgerd (ev/s)", "{:,.0f}"),
                             ("ref", "ingest C reference (ev/s)", "{:,.0f}"),
                             ("hwm_q2_mib", "VmHWM ledgerd half-way (MiB)", "{:,.1f}"),
                             ("hwm_mib", "VmHWM ledgerd at the end (MiB)", "{:,.1f}"),
                             ("anon_peak_mib", "RssAnon ledgerd, highest sample (MiB)", "{:,.1f}"),
                             ("written_per_event", "bytes written to disk per event", "{:,.0f}"),
                             ("bytes", "data.mdb bytes/event", "{:,.0f}"))
        if b.a.scale > 0
    ]
    n = b.a.runs
    out = ["| measure | " + " | ".join(f"run {i + 1}" for i in range(n)) + " | median |",
           "| --- |" + " --- |" * (n + 1)]
    for key, label, f in labels:
        xs = b.results.get(key, [])
        cells = [f.format(x) for x in xs] + [""] * (n - len(xs))
        out.append(f"| {label} | " + " | ".join(cells) + f" | {f.format(med(xs)) if xs else 'n/a'} |")
    return "\n".join(out)


def mechanisms(b):
    """Benchmarks/MECHANISMS.md, written by hand, carried verbatim into the document (or "")."""
    path = os.path.join(b.repo, "Benchmarks", "MECHANISMS.md")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip("\n")
    except FileNotFoundError:
        return ""
    return f"\n{text}\n" if text.strip() else ""


def document(b, mach, started, elapsed, command, table_md):
    a = b.a
    quick = " (quick smoke test: not the figures of record)" if a.quick else ""
    notes = "\n".join(f"- {n}" for n in b.notes) or "- none"
    scale_method = "" if a.scale <= 0 else f"""- **At scale (5).** After the runs, once, each on an empty directory: the UUIDv4 history
  {a.scale} times over, one copy after the other in time, into ledgerd and then into the C reference
  (for the rate's ratio). Copy c is shifted by c times the history's span (first to last `at`, in
  whole days), its case ids are numbered (`C-…` → `C<c>-…`) and the first 8 hex digits of each
  event id are replaced by `blake2b(first 8 digits + the byte c, 4 bytes)`, so the ids stay
  UUID-shaped and unique (the file is written once and cached in `.build-bench/data/`). The log
  grows at the pilot's pace for {a.scale} times as long, as many cases active at a time. VmHWM is read
  at the end and sampled every 50 ms to show it at a quarter, half and three quarters of the
  ingest's time, with the highest `RssAnon` sampled. Bytes written: `write_bytes` of
  `/proc/<pid>/io` at the end (events, indexes, checkpoints and LMDB's copy-on-write pages),
  against `data.mdb`'s size.
"""
    return f"""# Performance

Written by `scripts/bench` (issue 16); do not edit by hand, run it again.{quick}

- date: {started.strftime('%Y-%m-%d %H:%M UTC')} (the benchmark took {elapsed / 60:.1f} min)
- command: `{command}`
- commit: {mach['commit']}; binaries: {mach['binaries']}
- machine: {mach['cpu']} (nproc {mach['nproc']}), {mach['memory']} of memory, kernel {mach['kernel']}, {mach['os']}
- disk: {mach['filesystem']} (every run in a fresh directory under {a.tmp_dir})
- toolchain: {mach['swift']}; {mach['cc']}
- peers: LMDB {mach['lmdb']}, Redis {mach['redis']}, SQLite {mach['sqlite']} (Debian packages)
- history: `scripts/generate-pilot-data --seed 1 --cases {b.cases} --ids uuid`: {b.n_events:,} events,
  {b.uuid_history_bytes / b.n_events:.0f} bytes per event as NDJSON; the sequential rows (6, 7, 8) use the
  same history without `--ids uuid` ({b.history_bytes / b.n_events:.0f} bytes per event)
- runs: {a.runs}; each figure is the median of the runs, each ratio the median of the ratios measured
  within one run

{table_md}

The ledgerd column is the daemon as built from the commit above with the defaults of
`Config/ledgerd.toml` (the one-writer row: a copy of it with `writer_threads = 1`). "met?" compares
the median with the target of issue 16; nothing is asserted, and a figure that misses its target
says "no".

## Method

- **Ingest (1, 6).** `Benchmarks/load/loadgen.c` reads the history into memory, gives each event to
  one of 4 connections by a hash of its `case` (so each case's events keep their order on one
  connection, as ledgerd's lifecycle checks need), builds every request before the clock starts,
  then sends `{{"op":"append","events":[…]}}` requests of {a.batch:,} events with up to {a.inflight} per
  connection in flight over the Unix socket (one thread, epoll) and checks every response for
  `"ok":true` and one result per event. Events/s is all events divided by the time from the first
  byte sent to the last response read. Every ingest starts the server on an empty directory. The
  client is not the bottleneck: the same client drives the C reference at the rate in its column.
  The same client, file and settings drive the **C reference** (`Benchmarks/reference/appender.c`:
  one thread, epoll, splits the events array without parsing the events, `MDB_APPEND`s each
  event's bytes under a big-endian u64 position in one write transaction per request with LMDB's
  durable defaults, then answers) and **Redis Streams** (`redis-server` of Debian on a Unix socket,
  `appendonly yes`, `appendfsync always`, no RDB; each request is {a.batch:,} pipelined `XADD events * e
  <event>`). **SQLite** is embedded, so `Benchmarks/peers/sqlite_ingest.c` measures it in process
  with no socket: WAL, `synchronous=FULL`, `events(position INTEGER PRIMARY KEY, body TEXT)`, one
  transaction per {a.batch:,} events, one writer. The headline file has every `id` a random UUIDv4 (36
  characters), as intake systems that make their own idempotency keys send: the id index takes
  random inserts all over it. The generator's own ids (`sm-1-0000001`, in order) are the best case,
  appended (STORAGE.md, "Event ids"): the sequential rows. Within a run the ingests go one after the
  other: ledgerd on the UUID file (probed, 2), the C reference, Redis and SQLite on the same file,
  ledgerd on the sequential file and Redis on it too, then ledgerd on the UUID file again with
  `writer_threads = 1` (one thread validates a group, then writes and syncs it, instead of one
  validating while the other writes and syncs the group before it), whose ratio is against the
  two-thread UUID ingest of the same run. So across runs ledgerd and its peers alternate.
- **Status under load (2).** During each UUID ingest into ledgerd, a thread of the benchmark opens a
  connection of its own to the socket and writes `{{"op":"status"}}` every 10 ms, one request in
  flight (the answer line is read before the next write; a slower answer delays the next probe),
  and records the round trip from the write to the answer line read. The probes written while the
  load ran (from loadgen's first byte, its `seconds` before it returned, until it returned) give
  p50, p99 (nearest rank) and max per run. A probe without an answer within 5 s counts as the
  time it waited and its connection is opened again. The prober is Python on the same 2 cores as
  the daemon and loadgen, so its own scheduling delays are in the figures. The same is measured
  during the `writer_threads = 1` ingest ("Every run").
- **Replay (3).** With the daemon stopped, on the ledger of the run's UUID ingest: `ledgerctl replay
  --data-dir` (its own events/s: the rebuild, without process start), between two raw LMDB cursor
  scans of the same `events` database (`Benchmarks/reference/scan.c`, read-only, one read
  transaction, `MDB_NEXT`, touching each value; the faster of the two is kept). The page cache is
  warm for both.
- **Restart, memory, size, report (4).** On the ledger of the run's UUID ingest. Restart: from
  starting `ledgerd` on it to its socket accepting a connection (polled every 1 ms), process start
  included. Peak memory: `VmHWM` of `/proc/<pid>/status` of ledgerd read as the ingest's last
  response arrives (and, sampled every 50 ms, as it stood half-way through the ingest's time: a
  peak that grows with the log shows as a difference). VmHWM counts the pages of LMDB's memory
  map the process touched (file-backed, `RssFile`) as well as its heap, so the highest sampled
  `RssAnon` (heap, stacks) is shown beside it; the same for the sequential ingest (6). Bytes per
  event: the size of `data.mdb` after the ingest divided by the events (ledgerd keeps hash,
  indexes and projections besides the events; Redis's figure is its `appendonlydir` after the AOF
  rewrites it does by default, SQLite's the database and its WAL; all of the UUID file). Report:
  the wall time of `ledgerctl dump --data-dir D --out O`, daemon stopped.
{scale_method}- **One event per request (7).** One connection, one event per request, one request in flight, the
  first {a.latency_events:,} events of the sequential history, each on an empty ledger: the round trip
  of every request (write to response) gives p50 and p99 (nearest rank); ledgerd then the reference.
- **64 connections (8).** 64 connections, one event per request, one in flight each, the first
  {a.fanin_events:,} events of the sequential history on an empty ledger; the ratio is against the
  one-connection throughput of (7) in the same run. The reference (no group commit, one commit per
  request) is shown for scale with {a.latency_events:,} events.
- The machine is shared and noisy (other builds may run), which is why the targets are ratios
  measured side by side within a run and the figures are medians.

## Notes

{notes}
{mechanisms(b)}
## Every run

{runs_table(b)}
"""


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, help="events in the generated history (default 1,000,000; --quick: 100,000)")
    ap.add_argument("--runs", type=int, help="runs, of which the medians are taken (default 3; --quick: 1)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: about 100,000 events, one run")
    ap.add_argument("--batch", type=int, default=1000, help="events per append in the ingest (default 1,000)")
    ap.add_argument("--inflight", type=int, default=4, help="requests in flight per connection in the ingest (default 4)")
    ap.add_argument("--latency-events", type=int, help="events sent one per request (default 5,000; --quick: 1,000)")
    ap.add_argument("--fanin-events", type=int, help="events sent over 64 connections (default 20,000; --quick: 5,000)")
    ap.add_argument("--scale", type=int, help="after the runs, one more ingest, into ledgerd and then the reference, "
                                              "of the UUID history this many times over in time (default 10: "
                                              "10,000,000 events with the default --events; --quick: 0, none; "
                                              "at most 255)")
    ap.add_argument("--out", help="where to write the report (default docs/PERFORMANCE.md; with --quick "
                                  ".build-bench/PERFORMANCE-quick.md)")
    ap.add_argument("--timeout", type=float, default=600, help="limit of one load run, seconds (default 600)")
    ap.add_argument("--tmp-dir", default="/tmp", help="where the runs' data directories are made (default /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), help=argparse.SUPPRESS)
    ap.add_argument("--bin-dir", required=True, help=argparse.SUPPRESS)
    ap.add_argument("--tools-dir", required=True, help=argparse.SUPPRESS)
    ap.add_argument("--data-cache", help=argparse.SUPPRESS)
    ap.add_argument("--command", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.events = a.events or (100_000 if a.quick else 1_000_000)
    a.runs = a.runs or (1 if a.quick else 3)
    a.latency_events = a.latency_events or (1_000 if a.quick else 5_000)
    a.fanin_events = a.fanin_events or (5_000 if a.quick else 20_000)
    a.scale = (0 if a.quick else 10) if a.scale is None else a.scale
    if not 0 <= a.scale < 256:
        ap.error("--scale must be 0 (none) to 255 (the copies' ids are numbered by one byte)")
    a.data_cache = a.data_cache or os.path.join(a.tools_dir, "data")
    if a.out is None:
        a.out = os.path.join(a.repo, ".build-bench", "PERFORMANCE-quick.md") if a.quick else \
            os.path.join(a.repo, "docs", "PERFORMANCE.md")
    if min(a.events, a.runs, a.batch, a.inflight, a.latency_events, a.fanin_events) < 1 or a.batch > 10_000:
        ap.error("counts must be positive and --batch at most 10,000")
    if a.inflight > 64:
        ap.error("--inflight at most 64 (ledgerd's max_pending_per_connection)")
    command = a.command or "scripts/bench " + " ".join(sys.argv[1:])

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    b = None
    try:
        b = Bench(a)
        log(f"work directory {b.work}")
        b.history()
        for r in range(1, a.runs + 1):
            b.one_run(r)
        if a.scale > 0:
            b.scale()
        elapsed = time.perf_counter() - t0
        mach = b.machine()
        table_md = table(b)
        doc = document(b, mach, started, elapsed, command, table_md)
        print()
        print(f"ledgerd benchmark, {b.n_events:,} events (UUIDv4 ids first), median of {a.runs} run(s), "
              f"{mach['cpu']}, {started.strftime('%Y-%m-%d %H:%M UTC')}")
        print(table_md)
        for n in b.notes:
            print(f"note: {n}")
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out + ".tmp", "w") as f:
            f.write(doc)
        os.replace(a.out + ".tmp", a.out)
        raw_path = os.path.join(a.tools_dir, "bench-results.json")
        with open(raw_path, "w") as f:
            json.dump({"command": command, "started": started.isoformat(), "machine": mach, "events": b.n_events,
                       "history_uuid": b.uuid_history_path, "history_sequential": b.history_path,
                       "scale": a.scale, "scale_events": getattr(b, "scale_events", None), "results": b.results, "runs": [{"run": r, "what": w, **d} for r, w, d in b.raw],
                       "notes": b.notes}, f, indent=1)
        print(f"\nwritten to {a.out} (every measurement: {raw_path})")
        return 0
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        Daemon.stop_all()
        if b is not None:
            if a.keep:
                log(f"kept {b.work}")
            else:
                shutil.rmtree(b.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
