#!/usr/bin/env python3
"""The benchmark driver behind scripts/bench (issue 6). Standard library only.

scripts/bench installs the peers, builds ledgerd (release) and the C programs of Benchmarks/, then
runs this with --bin-dir and --tools-dir. It measures, side by side and in alternation, with the
median of --runs runs:

  1. durable ingest of the generated history into ledgerd over its socket (loadgen: 4 connections,
     batches of 1,000, --inflight requests in flight per connection);
     The same ingest again with the history's ids replaced by random UUIDv4s (--ids uuid), which
     makes the id index take random inserts instead of appends;
  2. the same load against the C reference appender (raw LMDB, one commit per request), Redis
     Streams (XADD pipelined, appendfsync always) and SQLite (WAL, synchronous=FULL, in process);
  3. one event per request, one request in flight: round trip p50/p99, ledgerd and the reference;
  4. 64 connections sending one event at a time (group commit), against 3's one connection;
  5. `ledgerctl replay` of the whole log against a raw LMDB cursor scan of the same directory;
  6. restart to ready on the ingested ledger, peak memory (VmHWM) at the end of the ingest, bytes
     of data.mdb per event, the time of `ledgerctl dump`.

It prints one table and writes it, with the machine, the date, the commit and the method, to
docs/PERFORMANCE.md (with --quick, to .build-bench/PERFORMANCE-quick.md unless --out is given).
Targets are reported, never asserted: the exit code says only whether the benchmark itself ran.
"""
import argparse
import datetime
import json
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
        self.results = {}  # key -> list of per-run values
        self.raw = []  # (run, what, dict)
        self.notes = []

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
        self.history_path = self.generate(cases, "sequence")
        # The same history with random UUIDv4 event ids, as intake systems that make their own
        # idempotency keys send: the id index then takes random inserts instead of appends.
        self.uuid_history_path = self.generate(cases, "uuid")
        with open(self.history_path, "rb") as f:
            n = sum(1 for line in f if line.strip())
        self.cases, self.n_events = cases, n
        self.history_bytes = os.path.getsize(self.history_path)
        log(f"history: {self.history_path}: {n:,} events, {self.history_bytes / n:.0f} bytes per event as NDJSON")

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
    def start_ledgerd(self, d, timeout=120.0):
        data, sock = os.path.join(d, "data"), os.path.join(d, "ledgerd.sock")
        return Daemon("ledgerd", [self.ledgerd, *self.config, "--data-dir", data, "--socket", sock], sock,
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

    # --- 1, 2, 6: ingest, then the ledger's replay, restart, report, size --------------------------
    def ingest_ledgerd(self, r, uuid_ids=False):
        """Ingests the history; with `uuid_ids`, the one with UUIDv4 ids, its figures under `…_uuid`."""
        x = "_uuid" if uuid_ids else ""
        d = self.fresh(f"run{r}-ledgerd{x}")
        log(f"run {r}: ingest into ledgerd ({self.n_events:,} events, 4 x {self.a.batch} x {self.a.inflight} in flight"
            + (", UUIDv4 ids)" if uuid_ids else ")"))
        dm = self.start_ledgerd(d)
        try:
            res, s = self.sampled_ingest(dm, self.uuid_history_path if uuid_ids else None)
            end_status = s.end
            hwm = end_status["VmHWM"]
            st = self.ledger_head(dm.sock)
        finally:
            rc = dm.stop()
        hwm_half = s.hwm_at(0.5)
        anon_peak = s.anon_peak
        self.put(f"anon_peak_ledgerd{x}_mib", anon_peak / 2**20)
        if rc != 0:
            self.notes.append(f"run {r}: ledgerd exited with {rc} on SIGTERM after the ingest{x}")
        if st.get("head") != self.n_events or res["duplicates"]:
            raise BenchError(f"ledgerd head {st.get('head')} after ingesting {self.n_events} events "
                             f"({res['duplicates']} duplicates)")
        self.put(f"ingest_ledgerd{x}", res["events_per_s"])
        self.put(f"hwm_ledgerd{x}_mib", hwm / 2**20)
        if hwm_half is not None:
            self.put(f"hwm_ledgerd{x}_half_mib", hwm_half / 2**20)
        data_bytes = file_size(os.path.join(d, "data", "data.mdb"))
        self.raw.append((r, f"ingest ledgerd{x}", {**res, "vm_hwm_bytes": hwm, "vm_hwm_half_bytes": hwm_half,
                                                    "data_mdb_bytes": data_bytes, "commits": st.get("commits")}))
        if uuid_ids:
            shutil.rmtree(d, ignore_errors=True)
            return None
        self.put("rssfile_end_ledgerd_mib", end_status.get("RssFile", 0) / 2**20)
        self.put("ingest_ledgerd_p50_ms", res["p50_us"] / 1000)
        self.put("bytes_ledgerd", data_bytes / self.n_events)
        return d

    def sampled_ingest(self, dm, history=None):
        """The ingest of `history` into the daemon `dm`, its /proc status sampled every 50 ms (to see
        whether the peak grows with the log); returns loadgen's result and the `Samples`."""
        samples, done = [], threading.Event()

        def sample():
            while not done.wait(0.05):
                try:
                    samples.append((time.perf_counter(), dm.status()))
                except (OSError, BenchError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            t_start = time.perf_counter()
            sampler.start()
            res = self.loadgen(dm.sock, 4, self.a.batch, self.a.inflight, history=history)
            t_end = time.perf_counter()
        finally:
            done.set()
            sampler.join()
        return res, Samples(samples, t_start, t_end, dm.status(), read_io(dm.pid))

    # --- 6 at scale: ingests of histories several times as large ----------------------------------
    def repeat_history(self, copies):
        """The history `copies` times over, one copy after another in time: copy c is shifted by c
        times the history's span (first to last `at`, in whole days) and its event and case ids get
        the copy's number (`sm-1-…` -> `sm<c>-1-…`, `C-…` -> `C<c>-…`, still increasing). A log that
        grows at the pilot's pace for `copies` times as long: as many cases active at a time."""
        path = os.path.join(self.a.data_cache, os.path.basename(self.history_path)[:-len(".ndjson")]
                            + f"-x{copies}.ndjson")
        if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(self.history_path):
            return path
        log(f"writing the history {copies} times over in time: {path}")
        with open(self.history_path, "rb") as f:
            lines = [line.rstrip(b"\n") for line in f if line.strip()]
        at = re.compile(rb'"at":"([^"]+)"')

        def parse(t):
            return datetime.datetime.fromisoformat(t.decode().replace("Z", "+00:00"))

        span = datetime.timedelta(days=(parse(at.search(lines[-1]).group(1)) - parse(at.search(lines[0]).group(1))).days + 1)
        stamp = re.compile(rb'"(at|scheduled_for)":"([^"]+)"')
        tmp = path + ".tmp"
        with open(tmp, "wb") as out:
            for c in range(copies):
                shift = span * c

                def shifted(m):
                    t = parse(m.group(2)) + shift
                    text = t.isoformat().replace("+00:00", "Z") if m.group(2).endswith(b"Z") else t.isoformat()
                    return b'"' + m.group(1) + b'":"' + text.encode() + b'"'

                for line in lines:
                    if c:
                        line = line.replace(b'"id":"sm-', b'"id":"sm%d-' % c, 1).replace(b'"case":"C-', b'"case":"C%d-' % c, 1)
                        line = stamp.sub(shifted, line)
                    out.write(line + b"\n")
        os.replace(tmp, path)
        return path

    def scale(self):
        """Two ingests, once each, into ledgerd and then the C reference, of histories `--scale`
        times as large: the pilot that many times over in time (`longer`: the log grows, the load
        does not), and `--scale` times the cases in the same months (`denser`: the cases active at
        a time grow too)."""
        k = self.a.scale
        self.scale_ingest("longer", self.repeat_history(max(1, round(k))))
        self.scale_ingest("denser", self.generate(round(self.cases * k), "sequence"))

    def scale_ingest(self, kind, path):
        with open(path, "rb") as f:
            n = sum(1 for line in f if line.strip())
        setattr(self, f"{kind}_events", n)
        d = self.fresh(f"{kind}-ledgerd")
        log(f"scale: ingest into ledgerd ({n:,} events, {kind})")
        dm = self.start_ledgerd(d)
        retry = None
        try:
            res, s = self.sampled_ingest(dm, path)
            st = self.ledger_head(dm.sock)
            if kind == "longer":
                # A client that sends everything again (each event a duplicate): retries must not
                # take memory.
                log(f"scale: the same {n:,} events again into ledgerd (all duplicates)")
                retry = self.loadgen(dm.sock, 4, self.a.batch, self.a.inflight, history=path)
                retry_hwm = dm.vm("VmHWM")
        finally:
            rc = dm.stop()
        if rc != 0:
            self.notes.append(f"scale ({kind}): ledgerd exited with {rc} on SIGTERM after the ingest")
        if retry is not None:
            if retry["duplicates"] != n:
                raise BenchError(f"sending the {n} events again gave {retry['duplicates']} duplicates, expected {n}")
            self.put("retry_ledgerd", retry["events_per_s"])
            self.put("retry_hwm_mib", retry_hwm / 2**20)
            self.raw.append((0, "retry ledgerd", {**retry, "vm_hwm_bytes": retry_hwm}))
        if st.get("head") != n or res["duplicates"]:
            raise BenchError(f"ledgerd head {st.get('head')} after ingesting {n} events ({res['duplicates']} duplicates)")
        data_bytes = file_size(os.path.join(d, "data", "data.mdb"))
        shutil.rmtree(d, ignore_errors=True)
        self.put(f"{kind}_ledgerd", res["events_per_s"])
        self.put(f"{kind}_hwm_mib", s.end["VmHWM"] / 2**20)
        for q in (1, 2, 3):
            h = s.hwm_at(q / 4)
            if h is not None:
                self.put(f"{kind}_hwm_q{q}_mib", h / 2**20)
        self.put(f"{kind}_anon_peak_mib", s.anon_peak / 2**20)
        self.put(f"{kind}_bytes", data_bytes / n)
        if s.io.get("write_bytes") is not None:
            self.put(f"{kind}_written_per_event", s.io["write_bytes"] / n)
        self.raw.append((0, f"{kind} ledgerd", {**res, "events": n, "vm_hwm_bytes": s.end["VmHWM"],
                                                "data_mdb_bytes": data_bytes, "io": s.io}))
        d = self.fresh(f"{kind}-reference")
        log(f"scale: ingest into the C reference ({n:,} events, {kind})")
        dm = self.start_reference(d)
        try:
            ref = self.loadgen(dm.sock, 4, self.a.batch, self.a.inflight, history=path)
        finally:
            dm.stop()
        shutil.rmtree(d, ignore_errors=True)
        self.put(f"{kind}_ref", ref["events_per_s"])
        self.put(f"ratio_{kind}_ref", res["events_per_s"] / ref["events_per_s"])
        self.raw.append((0, f"{kind} reference", {**ref, "events": n}))

    def ingest_reference(self, r):
        d = self.fresh(f"run{r}-reference")
        log(f"run {r}: ingest into the C reference")
        dm = self.start_reference(d)
        try:
            res = self.loadgen(dm.sock, 4, self.a.batch, self.a.inflight)
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

    def ingest_redis(self, r):
        d = self.fresh(f"run{r}-redis")
        log(f"run {r}: ingest into Redis Streams (appendfsync always)")
        dm = self.start_redis(d)
        try:
            res = self.loadgen(dm.sock, 4, self.a.batch, self.a.inflight, protocol="redis")
            hwm = dm.vm("VmHWM")
            xlen = request(dm.sock, b"*2\r\n$4\r\nXLEN\r\n$6\r\nevents\r\n").strip()
        finally:
            dm.stop()
        if xlen != b":%d" % self.n_events:
            raise BenchError(f"redis XLEN {xlen!r} after {self.n_events} events")
        aof = tree_size(os.path.join(d, "appendonlydir")) if os.path.isdir(os.path.join(d, "appendonlydir")) \
            else file_size(os.path.join(d, "appendonly.aof"))
        self.put("ingest_redis", res["events_per_s"])
        self.put("bytes_redis", aof / self.n_events)
        self.put("hwm_redis_mib", hwm / 2**20)
        self.raw.append((r, "ingest redis", {**res, "vm_hwm_bytes": hwm, "aof_bytes": aof}))
        shutil.rmtree(d, ignore_errors=True)

    def ingest_sqlite(self, r):
        d = self.fresh(f"run{r}-sqlite")
        log(f"run {r}: ingest into SQLite (WAL, synchronous=FULL, in process)")
        out, _, _ = run([self.tool("sqlite_ingest"), "--db", os.path.join(d, "events.db"), "--file", self.history_path,
                         "--batch", str(self.a.batch)], self.a.timeout, "sqlite_ingest")
        res = json_line(out, "sqlite_ingest")
        if res["events"] != self.n_events:
            raise BenchError(f"sqlite stored {res['events']} events of {self.n_events}")
        self.put("ingest_sqlite", res["events_per_s"])
        self.put("bytes_sqlite", res["db_bytes"] / self.n_events)
        self.raw.append((r, "ingest sqlite", res))
        shutil.rmtree(d, ignore_errors=True)

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
        log(f"run {r}: replay against a raw LMDB scan, restart, report")
        # alternate: scan, replay, scan (the median scan of the run is kept)
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

    # --- 3, 4: one event per request ---------------------------------------------------------------
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
        d = self.ingest_ledgerd(r)
        ref = self.ingest_reference(r)
        self.ingest_redis(r)
        self.ingest_sqlite(r)
        self.ingest_ledgerd(r, uuid_ids=True)
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
        self.put("ratio_ingest_ref", R["ingest_ledgerd"][-1] / R["ingest_ref"][-1])
        self.put("ratio_ingest_redis", R["ingest_ledgerd"][-1] / R["ingest_redis"][-1])
        self.put("ratio_ingest_sqlite", R["ingest_ledgerd"][-1] / R["ingest_sqlite"][-1])
        self.put("ratio_ingest_uuid_ref", R["ingest_ledgerd_uuid"][-1] / R["ingest_ref"][-1])
        self.put("ratio_ingest_uuid_redis", R["ingest_ledgerd_uuid"][-1] / R["ingest_redis"][-1])
        self.put("ratio_p50", R["one_ledgerd_p50_us"][-1] / R["one_ref_p50_us"][-1])
        self.put("ratio_p99", R["one_ledgerd_p99_us"][-1] / R["one_ref_p99_us"][-1])
        self.put("ratio_fanin", R["fanin_ledgerd_eps"][-1] / R["one_ledgerd_eps"][-1])
        self.put("ratio_fanin_ref", R["fanin_ref_eps"][-1] / R["one_ref_eps"][-1])
        self.put("ratio_replay", R["replay_ledgerd"][-1] / R["scan_ledgerd"][-1])
        self.put("ratio_bytes", R["bytes_ledgerd"][-1] / R["bytes_ref"][-1])
        self.put("ratio_hwm", R["hwm_ledgerd_mib"][-1] / R["hwm_ref_mib"][-1])

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
    ingest = f"durable ingest, 4 conn × {a.batch:,}/request, {a.inflight} in flight"
    return [
        (f"1. {ingest}", fmt_rate(g("ingest_ledgerd")), "C reference " + fmt_rate(g("ingest_ref")),
         fmt_ratio(g("ratio_ingest_ref")), "≥ 0.40 × reference", met(ge(g("ratio_ingest_ref"), 0.40))),
        ("2. the same against Redis Streams (XADD pipelined, appendfsync always)", fmt_rate(g("ingest_ledgerd")),
         "Redis " + fmt_rate(g("ingest_redis")), fmt_ratio(g("ratio_ingest_redis")), "≥ 1.5 × Redis",
         met(ge(g("ratio_ingest_redis"), 1.5))),
        ("1. the same with random UUIDv4 event ids (36 characters)", fmt_rate(g("ingest_ledgerd_uuid")),
         "C reference " + fmt_rate(g("ingest_ref")) + "; Redis " + fmt_rate(g("ingest_redis")),
         fmt_ratio(g("ratio_ingest_uuid_ref")) + " ref; " + fmt_ratio(g("ratio_ingest_uuid_redis")) + " Redis",
         "—", "—"),
        ("2. the same against SQLite (WAL, synchronous=FULL, in process, 1 writer)", fmt_rate(g("ingest_ledgerd")),
         "SQLite " + fmt_rate(g("ingest_sqlite")), fmt_ratio(g("ratio_ingest_sqlite")), "—", "—"),
        ("3. one event per request, 1 in flight: p50 round trip", fmt_us(g("one_ledgerd_p50_us")),
         "C reference " + fmt_us(g("one_ref_p50_us")), fmt_ratio(g("ratio_p50")), "≤ 2 × reference",
         met(le(g("ratio_p50"), 2.0))),
        ("3. one event per request, 1 in flight: p99 round trip", fmt_us(g("one_ledgerd_p99_us")),
         "C reference " + fmt_us(g("one_ref_p99_us")), fmt_ratio(g("ratio_p99")), "—", "—"),
        ("4. 64 connections × 1 event per request (group commit)", fmt_rate(g("fanin_ledgerd_eps")),
         "ledgerd, 1 connection " + fmt_rate(g("one_ledgerd_eps")), fmt_ratio(g("ratio_fanin")),
         "≥ 10 × one connection", met(ge(g("ratio_fanin"), 10.0))),
        ("4. (for comparison) the C reference, no group commit, 64 vs 1 connection", fmt_rate(g("fanin_ref_eps")),
         "reference, 1 connection " + fmt_rate(g("one_ref_eps")), fmt_ratio(g("ratio_fanin_ref")), "—", "—"),
        ("5. `ledgerctl replay`, all projections", fmt_rate(g("replay_ledgerd")),
         "raw LMDB cursor scan " + fmt_rate(g("scan_ledgerd")), fmt_ratio(g("ratio_replay")),
         "≥ 1,000,000 ev/s", met(ge(g("replay_ledgerd"), 1_000_000))),
        (f"6. restart to ready on {b.n_events:,} events", fmt_s(g("restart_s")), "—", "", "< 1 s",
         met(None if g("restart_s") is None else g("restart_s") < 1.0)),
        ("6. peak memory (VmHWM) at the end of the ingest", fmt_mib(g("hwm_ledgerd_mib")) +
         f" (half-way: {fmt_mib(g('hwm_ledgerd_half_mib'))}; peak anonymous: {fmt_mib(g('anon_peak_ledgerd_mib'))})",
         "C reference " + fmt_mib(g("hwm_ref_mib")), fmt_ratio(g("ratio_hwm")), "≤ 256 MiB",
         met(le(g("hwm_ledgerd_mib"), 256.0))),
        ("6. the same with UUIDv4 event ids", fmt_mib(g("hwm_ledgerd_uuid_mib")) +
         f" (half-way: {fmt_mib(g('hwm_ledgerd_uuid_half_mib'))}; peak anonymous: "
         f"{fmt_mib(g('anon_peak_ledgerd_uuid_mib'))})", "—", "", "≤ 256 MiB",
         met(le(g("hwm_ledgerd_uuid_mib"), 256.0))),
        ("6. bytes on disk per event (data.mdb)", fmt_b(g("bytes_ledgerd")),
         f"C reference {fmt_b(g('bytes_ref'))}; Redis appendonlydir {fmt_b(g('bytes_redis'))}; "
         f"SQLite {fmt_b(g('bytes_sqlite'))}",
         fmt_ratio(g("ratio_bytes")), "—", "—"),
        (f"6. time to produce the report (`ledgerctl dump`, {b.n_events:,} events)", fmt_s(g("report_s")), "—", "",
         "—", "—"),
    ] + scale_rows(b, g, met)


def scale_rows(b, g, met):
    """The rows of the ingests at `--scale` times the log, if they ran."""
    if g("longer_ledgerd") is None:
        return []
    k, hwm1 = b.a.scale, g("hwm_ledgerd_mib")
    out = []
    for kind, what in (("longer", f"the pilot {max(1, round(k))} times over"), ("denser", f"{k:g} × the cases in the same months")):
        hwm = g(f"{kind}_hwm_mib")
        growth = None if hwm1 is None else hwm / hwm1
        quarters = ", ".join(fmt_mib(g(f"{kind}_hwm_q{q}_mib")) for q in (1, 2, 3))
        n = getattr(b, f"{kind}_events")
        # Only the longer log measures growth with the log's size: the denser one also multiplies
        # the cases active at a time, which `checkpoint_events` bounds, not the log.
        target = "≤ 256 MiB, not growing with the log (≤ 1.05 ×)" if kind == "longer" else "≤ 256 MiB"
        ok = None if growth is None else hwm <= 256.0 and (growth <= 1.05 or kind == "denser")
        retry = [] if kind != "longer" or g("retry_hwm_mib") is None else [
            (f"6. the same {n:,} events sent again (all duplicates): peak memory (VmHWM) after",
             f"{fmt_mib(g('retry_hwm_mib'))} (at {fmt_rate(g('retry_ledgerd'))})", f"after the ingest: {fmt_mib(hwm)}",
             fmt_ratio(g("retry_hwm_mib") / hwm), "not growing (≤ 1.05 ×)", met(g("retry_hwm_mib") <= hwm * 1.05)),
        ]
        out += [
            (f"6. ingest of {what} ({n:,} events, 1 run): rate", fmt_rate(g(f"{kind}_ledgerd")),
             "C reference " + fmt_rate(g(f"{kind}_ref")), fmt_ratio(g(f"ratio_{kind}_ref")), "—", "—"),
            (f"6. ingest of {what}: peak memory (VmHWM)",
             f"{fmt_mib(hwm)} (at ¼, ½, ¾ of the time: {quarters}; peak anonymous: {fmt_mib(g(f'{kind}_anon_peak_mib'))})",
             f"ledgerd at 1 ×: {fmt_mib(hwm1)}", fmt_ratio(growth), target, met(ok)),
            (f"6. ingest of {what}: bytes written to disk per event (/proc/PID/io)",
             fmt_b(g(f"{kind}_written_per_event")), f"data.mdb {fmt_b(g(f'{kind}_bytes'))} per event", "", "—", "—"),
        ] + retry
    return out


def table(b):
    head = ("measure", "ledgerd", "reference / peer", "ratio", "target", "met?")
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for r in rows(b):
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def runs_table(b):
    labels = [
        ("ingest_ledgerd", "ingest ledgerd (ev/s)", "{:,.0f}"), ("ingest_ref", "ingest C reference (ev/s)", "{:,.0f}"),
        ("ingest_redis", "ingest Redis (ev/s)", "{:,.0f}"), ("ingest_sqlite", "ingest SQLite (ev/s)", "{:,.0f}"),
        ("ingest_ledgerd_uuid", "ingest ledgerd, UUIDv4 ids (ev/s)", "{:,.0f}"),
        ("ingest_ledgerd_p50_ms", "ingest ledgerd, p50 per request of the batch (ms)", "{:,.1f}"),
        ("ingest_ref_p50_ms", "ingest C reference, p50 per request (ms)", "{:,.1f}"),
        ("one_ledgerd_p50_us", "1 event/request ledgerd p50 (µs)", "{:,.0f}"),
        ("one_ledgerd_p99_us", "1 event/request ledgerd p99 (µs)", "{:,.0f}"),
        ("one_ref_p50_us", "1 event/request reference p50 (µs)", "{:,.0f}"),
        ("one_ref_p99_us", "1 event/request reference p99 (µs)", "{:,.0f}"),
        ("one_ledgerd_eps", "1 connection ledgerd (ev/s)", "{:,.0f}"),
        ("fanin_ledgerd_eps", "64 connections ledgerd (ev/s)", "{:,.0f}"),
        ("one_ref_eps", "1 connection reference (ev/s)", "{:,.0f}"),
        ("fanin_ref_eps", "64 connections reference (ev/s)", "{:,.0f}"),
        ("replay_ledgerd", "ledgerctl replay (ev/s, as it reports)", "{:,.0f}"),
        ("replay_wall_s", "ledgerctl replay, whole process (s)", "{:,.2f}"),
        ("scan_ledgerd", "LMDB scan of ledgerd's log (ev/s)", "{:,.0f}"),
        ("scan_ref", "LMDB scan of the reference's log (ev/s)", "{:,.0f}"),
        ("restart_s", "restart to ready (s)", "{:,.3f}"), ("report_s", "ledgerctl dump (s)", "{:,.2f}"),
        ("hwm_ledgerd_half_mib", "VmHWM ledgerd half-way through the ingest (MiB)", "{:,.1f}"),
        ("hwm_ledgerd_mib", "VmHWM ledgerd at the end of the ingest (MiB)", "{:,.1f}"),
        ("anon_peak_ledgerd_mib", "RssAnon ledgerd, highest sample during the ingest (MiB)", "{:,.1f}"),
        ("rssfile_end_ledgerd_mib", "RssFile ledgerd at the end of the ingest (mapped LMDB pages, MiB)", "{:,.1f}"), ("hwm_ref_mib", "VmHWM reference (MiB)", "{:,.1f}"),
        ("hwm_redis_mib", "VmHWM Redis (MiB)", "{:,.1f}"),
        ("hwm_ledgerd_uuid_half_mib", "VmHWM ledgerd half-way, UUIDv4 ids (MiB)", "{:,.1f}"),
        ("hwm_ledgerd_uuid_mib", "VmHWM ledgerd at the end, UUIDv4 ids (MiB)", "{:,.1f}"),
        ("bytes_ledgerd", "data.mdb bytes/event ledgerd", "{:,.0f}"), ("bytes_ref", "data.mdb bytes/event reference", "{:,.0f}"),
    ] + [
        (f"{kind}_{key}", f"{kind} log (once): {what}", f)
        for kind in ("longer", "denser")
        for key, what, f in (("ledgerd", "ingest ledgerd (ev/s)", "{:,.0f}"), ("ref", "ingest C reference (ev/s)", "{:,.0f}"),
                             ("hwm_mib", "VmHWM ledgerd at the end (MiB)", "{:,.1f}"),
                             ("written_per_event", "bytes written to disk per event", "{:,.0f}"))
    ]
    n = b.a.runs
    out = ["| measure | " + " | ".join(f"run {i + 1}" for i in range(n)) + " | median |",
           "| --- |" + " --- |" * (n + 1)]
    for key, label, f in labels:
        xs = b.results.get(key, [])
        cells = [f.format(x) for x in xs] + [""] * (n - len(xs))
        out.append(f"| {label} | " + " | ".join(cells) + f" | {f.format(med(xs)) if xs else 'n/a'} |")
    return "\n".join(out)


def document(b, mach, started, elapsed, command, table_md):
    a = b.a
    quick = " (quick smoke test: not the figures of record)" if a.quick else ""
    notes = "\n".join(f"- {n}" for n in b.notes) or "- none"
    scale_method = "" if a.scale <= 0 else f"""- **At scale (6).** After the runs, once each, into ledgerd and then the C reference, each on an
  empty directory: two ingests of histories {a.scale:g} times as large. *Longer*: the history
  {max(1, round(a.scale))} times over, one copy after the other in time (each shifted by the
  history's span, its ids numbered by copy): the log grows and the load stays that of the pilot.
  Its peak memory against the median at 1 × is the target "not growing with the log" ("met"
  allows 5 %; what grows, and why, is in docs/OPERATIONS.md, "Capacity"). *Denser*: `--cases` {a.scale:g} times as many in the same months, so {a.scale:g}
  times the cases are active at a time and each checkpoint interval touches more of them (bounded
  by `checkpoint_events`, not by the log): shown, judged only against 256 MiB. VmHWM is sampled
  every 50 ms to show it at a quarter, half and three quarters of the ingest's time. Bytes
  written: `write_bytes` of `/proc/<pid>/io` at the end (events, indexes, checkpoints and LMDB's
  copy-on-write pages, against `data.mdb`'s size). After the longer ingest the same events are
  sent again (every one a duplicate, as a client that retries everything): VmHWM after it
  against VmHWM after the ingest.
"""
    return f"""# Performance

Written by `scripts/bench` (issue 6); do not edit by hand, run it again.{quick}

- date: {started.strftime('%Y-%m-%d %H:%M UTC')} (the benchmark took {elapsed / 60:.1f} min)
- command: `{command}`
- commit: {mach['commit']}; binaries: {mach['binaries']}
- machine: {mach['cpu']} (nproc {mach['nproc']}), {mach['memory']} of memory, kernel {mach['kernel']}, {mach['os']}
- disk: {mach['filesystem']} (every run in a fresh directory under {a.tmp_dir})
- toolchain: {mach['swift']}; {mach['cc']}
- peers: LMDB {mach['lmdb']}, Redis {mach['redis']}, SQLite {mach['sqlite']} (Debian packages)
- history: `scripts/generate-pilot-data --seed 1 --cases {b.cases}`: {b.n_events:,} events,
  {b.history_bytes / b.n_events:.0f} bytes per event as NDJSON; the UUID rows use the same history
  with `--ids uuid`
- runs: {a.runs}; each figure is the median of the runs, each ratio the median of the ratios measured
  within one run

{table_md}

The ledgerd column is the daemon as built from the commit above with the defaults of
`Config/ledgerd.toml`. "met?" compares the median with the target of issue 6; nothing is asserted,
and a figure that misses its target says "no".

## Method

- **Ingest (1, 2).** `Benchmarks/load/loadgen.c` reads the history into memory, gives each event to
  one of 4 connections by a hash of its `case` (so each case's events keep their order on one
  connection, as ledgerd's lifecycle checks need), builds every request before the clock starts,
  then sends `{{"op":"append","events":[…]}}` requests of {a.batch:,} events with up to {a.inflight} per
  connection in flight over the Unix socket (one thread, epoll) and checks every response for
  `"ok":true` and one result per event. Events/s is all events divided by the time from the first
  byte sent to the last response read. Every run starts the server on an empty directory. The
  client is not the bottleneck: the same client drives the C reference at the rate in its column.
  The same client, file and settings drive the **C reference** (`Benchmarks/reference/appender.c`:
  one thread, epoll, splits the events array without parsing the events, `MDB_APPEND`s each
  event's bytes under a big-endian u64 position in one write transaction per request with LMDB's
  durable defaults, then answers) and **Redis Streams** (`redis-server` of Debian on a Unix socket,
  `appendonly yes`, `appendfsync always`, no RDB; each request is {a.batch:,} pipelined `XADD events * e
  <event>`). **SQLite** is embedded, so `Benchmarks/peers/sqlite_ingest.c` measures it in process
  with no socket: WAL, `synchronous=FULL`, `events(position INTEGER PRIMARY KEY, body TEXT)`, one
  transaction per {a.batch:,} events, one writer. Within a run the four go one after the other
  (ledgerd, reference, Redis, SQLite, then ledgerd with UUID ids), so across runs ledgerd and its
  peers alternate. The UUID run sends the same history with every `id` a random UUIDv4 (36
  characters): the ids the sequence generator gives (`sm-1-0000001`, in order) are the best case
  for the id index, since they arrive in key order and are appended; random ones are inserted all
  over it (STORAGE.md, "Event ids").
- **One event per request (3).** One connection, one event per request, one request in flight, the
  first {a.latency_events:,} events of the history, each on an empty ledger: the round trip of every
  request (write to response) gives p50 and p99 (nearest rank); ledgerd then the reference.
- **64 connections (4).** 64 connections, one event per request, one in flight each, the first
  {a.fanin_events:,} events on an empty ledger; the ratio is against the one-connection throughput of
  (3) in the same run. The reference (no group commit, one commit per request) is shown for scale
  with {a.latency_events:,} events.
- **Replay (5).** With the daemon stopped, on the ledger of the run's ingest: `ledgerctl replay
  --data-dir` (its own events/s: the rebuild, without process start), between two raw LMDB cursor
  scans of the same `events` database (`Benchmarks/reference/scan.c`, read-only, one read
  transaction, `MDB_NEXT`, touching each value; the faster of the two is kept). The page cache is
  warm for both.
- **Restart, memory, size, report (6).** Restart: from starting `ledgerd` on the ingested ledger
  to its socket accepting a connection (polled every 1 ms), process start included. Peak memory:
  `VmHWM` of `/proc/<pid>/status` of ledgerd read as the ingest's last response arrives (and,
  sampled every 50 ms, as it stood half-way through the ingest's time: a peak that grows with the
  log shows as a difference). VmHWM counts the pages of LMDB's memory map the process touched
  (file-backed, `RssFile`) as well as its heap, so the highest sampled `RssAnon` (heap, stacks) is
  shown beside it. Bytes per
  event: the size of `data.mdb` after the ingest divided by the events (ledgerd keeps hash, indexes
  and projections besides the events; Redis's figure is its `appendonlydir` after the AOF rewrites
  it does by default, SQLite's the database and its WAL). Report: the wall time of `ledgerctl dump --data-dir D --out
  O` on the ingested ledger, daemon stopped.
{scale_method}- The machine is shared and noisy (other builds may run), which is why the targets are ratios
  measured side by side within a run and the figures are medians.

## Notes

{notes}

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
    ap.add_argument("--scale", type=float, help="after the runs, two more ingests of histories this many times "
                                                "as large (the history repeated in time, and that many times the "
                                                "cases), into ledgerd and the reference (default 4; --quick: 0, none)")
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
    a.scale = (0 if a.quick else 4) if a.scale is None else a.scale
    if a.scale < 0:
        ap.error("--scale must be 0 (none) or more")
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
        print(f"ledgerd benchmark, {b.n_events:,} events, median of {a.runs} run(s), "
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
                       "results": b.results, "runs": [{"run": r, "what": w, **d} for r, w, d in b.raw],
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
