#!/usr/bin/env python3
"""What one hostile address costs `hashup serve` (docs/design.md, "Hostile input").

    scripts/bench-serve-hostile.py HASHUP lockout [SERVE FLAGS...]
    scripts/bench-serve-hostile.py HASHUP memory  [SERVE FLAGS...]

lockout: 316 connections from 127.0.0.2 that send nothing and reconnect the moment they are
closed; then `hashup upload` of one 20-byte file from 127.0.0.1 through the API. Prints how long
that upload took (given up at 60 s).

memory: 1,000 connections from 127.0.0.2, each sending 380 KB of a header line that never ends.
Prints the server's resident memory before, and its peak (VmHWM) after.

The server runs on the embedded store in a temporary directory, with a token for alice.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def start_serve(hashup, tmp, flags):
    tokens = os.path.join(tmp, "tokens.json")
    with open(tokens, "w") as f:
        json.dump({"hostile-bench-token": {"user": "alice"}}, f)
    serve = subprocess.Popen(
        [hashup, "serve", "--listen", "127.0.0.1:0", "--tokens", tokens,
         "--store", os.path.join(tmp, "store"), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = serve.stdout.readline().strip()
    api = line.removeprefix("hashup serve: listening on ")
    host, port = api.removeprefix("http://").split("/")[0].split(":")
    return serve, api, (host, int(port))


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB


def idle_forever(addr, stop):
    while not stop.is_set():
        s = socket.socket()
        try:
            s.bind(("127.0.0.2", 0))
            s.connect(addr)
            s.settimeout(0.5)
            while not stop.is_set():
                try:
                    if not s.recv(64):
                        break
                except socket.timeout:
                    continue
        except OSError:
            time.sleep(0.01)
        finally:
            s.close()


def lockout(hashup, api, addr, tmp):
    stop = threading.Event()
    threads = [threading.Thread(target=idle_forever, args=(addr, stop), daemon=True)
               for _ in range(316)]
    for t in threads:
        t.start()
    time.sleep(2)
    src = os.path.join(tmp, "src")
    os.makedirs(src)
    with open(os.path.join(src, "real.sif"), "w") as f:
        f.write("a real client's file\n")
    env = dict(os.environ, PROMINENCE_TOKEN="hostile-bench-token", HOME=tmp)
    started = time.monotonic()
    try:
        run = subprocess.run([hashup, "upload", src, "--url", api, "--progress", "none"],
                             env=env, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
        print(f"upload from 127.0.0.1: exit {run.returncode} after {took:.2f} s")
    except subprocess.TimeoutExpired:
        print("upload from 127.0.0.1: not finished after 60 s")
    stop.set()


def memory(pid, addr):
    before = status(pid, "VmRSS")
    socks = []
    line = b"GET /prominence/v1/data HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 380_000
    for _ in range(1000):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        try:
            s.connect(addr)
            s.setblocking(False)
            socks.append([s, 0])
        except OSError:
            s.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(sent < len(line) for _, sent in socks):
        for entry in socks:
            s, sent = entry
            if sent < len(line):
                try:
                    entry[1] += s.send(line[sent:sent + 65536])
                except BlockingIOError:
                    pass
                except OSError:
                    entry[1] = len(line)  # closed by the server
    time.sleep(1)
    print(f"serve: {before / 1024:.1f} MB resident before, "
          f"{status(pid, 'VmHWM') / 1024:.1f} MB at its peak")
    for s, _ in socks:
        s.close()


def main():
    hashup, what, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
    with tempfile.TemporaryDirectory() as tmp:
        serve, api, addr = start_serve(hashup, tmp, flags)
        try:
            if what == "lockout":
                lockout(hashup, api, addr, tmp)
            else:
                memory(serve.pid, addr)
        finally:
            serve.kill()
            serve.wait()


if __name__ == "__main__":
    main()
