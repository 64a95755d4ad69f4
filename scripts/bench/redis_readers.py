#!/usr/bin/env python3
"""Redis's own CPU per event for a tickcast cluster of R nodes, without the nodes:
how far one Redis carries a cluster (docs/CLUSTER.md, "Capacity").

    python3 scripts/bench/redis_readers.py [R ...]     # default: 1 3 10 30 100
    EVENTS=5000 RATE=1000 python3 scripts/bench/redis_readers.py 100

Starts redis-server on a free port (no persistence, its own temporary directory,
killed by PID at the end), opens R reader connections that each do what a node's
cluster-reader does (XREAD COUNT 1000 BLOCK 1000 STREAMS key <last id>, in a
loop), then appends EVENTS events with tickcast's own append script (EVAL, read
from src/cluster/mod.rs; the fields of a 60-byte publish) at RATE a second, one
at a time as a node's publishers do, until every reader has read every event.
Redis's CPU time (every thread's schedstat, in ns) before and after, less its
idle CPU (measured over a second before), divided by the events, is the cost of
one event with R nodes reading. Prints CSV. Readers
run in this one Python process, so at high rates they fall behind and read
several events per XREAD, as busy nodes do. Bounded: 120 s per R."""
import os, re, selectors, shutil, socket, subprocess, sys, tempfile, time

SCRIPT = re.search(r'const APPEND_SCRIPT: &str = "\\\n(.*?)";',
                   open(os.path.join(os.path.dirname(__file__), '../../src/cluster/mod.rs')).read(), re.S).group(1)

def cmd(*args):
    out = [b'*%d\r\n' % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b'$%d\r\n%s\r\n' % (len(a), a))
    return b''.join(out)

def parse(buf, i=0):
    """One RESP value from buf at i: (value, next index) or None if incomplete."""
    end = buf.find(b'\r\n', i)
    if end < 0: return None
    kind, line = buf[i:i+1], buf[i+1:end]
    j = end + 2
    if kind in b'+-': return line, j
    if kind == b':': return int(line), j
    if kind == b'$':
        n = int(line)
        if n < 0: return None.__class__, j  # nil marker
        if len(buf) < j + n + 2: return None
        return buf[j:j+n], j + n + 2
    if kind == b'*':
        n = int(line)
        if n < 0: return [], j
        items = []
        for _ in range(n):
            r = parse(buf, j)
            if r is None: return None
            items.append(r[0]); j = r[1]
        return items, j
    raise ValueError(kind)

def cpu(pid):
    """Seconds on CPU of every thread of pid (schedstat: nanoseconds)."""
    total = 0
    for task in os.listdir(f'/proc/{pid}/task'):
        total += int(open(f'/proc/{pid}/task/{task}/schedstat').read().split()[0])
    return total / 1e9

def run(readers, events, rate):
    probe = socket.socket(); probe.bind(('127.0.0.1', 0)); port = probe.getsockname()[1]; probe.close()
    d = tempfile.mkdtemp()
    redis = subprocess.Popen(['redis-server', '--port', str(port), '--bind', '127.0.0.1',
                              '--save', '', '--appendonly', 'no', '--dir', d],
                             stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(('127.0.0.1', port)).close(); break
            except OSError: time.sleep(0.05)
        sel = selectors.DefaultSelector()
        state = {}
        for r in range(readers):
            s = socket.create_connection(('127.0.0.1', port))
            s.setblocking(False)
            state[s] = {'buf': b'', 'last': b'0-0', 'got': 0}
            s.send(cmd('XREAD', 'COUNT', 1000, 'BLOCK', 1000, 'STREAMS', 'b:events', b'0-0'))
            sel.register(s, selectors.EVENT_READ)
        pub = socket.create_connection(('127.0.0.1', port))
        body = '{"price":42.5,"symbol":"ABCD","at":"2026-11-28T13:00:00.000Z"}'
        args = cmd('EVAL', SCRIPT, 2, 'b:events', 'b:last', 1000, 'node', 5, 'k', 'message', 'data', body)
        time.sleep(0.3)
        # Redis's own idle cost (its timers, the blocked readers), taken out below.
        i0 = cpu(redis.pid); time.sleep(1.0); idle_per_s = cpu(redis.pid) - i0
        c0 = cpu(redis.pid); t0 = time.time()
        sent = 0; interval = 1.0 / rate
        nxt = time.time()
        pending = b''
        while True:
            now = time.time()
            if sent < events and now >= nxt:
                pub.sendall(args); sent += 1; nxt += interval
                pub.recv(64)  # the id
            done = all(st['got'] >= events for st in state.values())
            if done: break
            for key, _ in sel.select(timeout=max(0, min(nxt - time.time(), 0.01)) if sent < events else 0.05):
                s = key.fileobj; st = state[s]
                st['buf'] += s.recv(1 << 20)
                r = parse(st['buf'])
                if r is None: continue
                val, j = r
                st['buf'] = st['buf'][j:]
                if isinstance(val, list) and val:
                    entries = val[0][1]
                    st['got'] += len(entries)
                    st['last'] = entries[-1][0]
                s.send(cmd('XREAD', 'COUNT', 1000, 'BLOCK', 1000, 'STREAMS', 'b:events', st['last']))
            if time.time() - t0 > 120: raise SystemExit('timeout')
        used = cpu(redis.pid) - c0; wall = time.time() - t0
        net = max(0.0, used - idle_per_s * wall)
        print(f"{readers},{events},{rate:g},{net / events * 1e6:.1f},{used / wall * 100:.1f},{idle_per_s * 100:.2f}", flush=True)
    finally:
        redis.kill(); redis.wait()
        shutil.rmtree(d, ignore_errors=True)

if __name__ == '__main__':
    events = int(os.environ.get('EVENTS', 5000)); rate = float(os.environ.get('RATE', 1000))
    print("readers,events,rate_per_s,redis_cpu_us_per_event,redis_cpu_percent,redis_idle_cpu_percent")
    for r in map(int, sys.argv[1:] or ['1', '3', '10', '30', '100']):
        run(r, events, rate)
