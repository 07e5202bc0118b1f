#!/usr/bin/env python3
"""The baseline an operator would otherwise write: a small kazoo agent following zk-supervise's recipe.

Usage: kazoo_agent.py <workers.toml>   (the same TOML file zk-supervise reads; [zookeeper] connect,
session_timeout, root, [node] id, and per [[worker]] name, command, env, working_dir, stop_signal,
grace_period, restart_delay are used, the rest ignored).

For each worker it creates an ephemeral sequential candidate `<root>/<worker>/_c_<uuid>-n_<seq>`
(JSON data like zk-supervise's); the lowest sequence leads; a follower watches only its predecessor
(`exists` with a watch) and lists the queue again when it goes; the leader watches its own candidate.
The leader runs the worker with `subprocess` in a process group of its own, with
PR_SET_PDEATHSIG(SIGKILL) so the child dies with the agent, and the same ZK_SUPERVISE_* environment;
a child that exits is restarted after restart_delay. On session loss (LOST) every child is killed and
the agent rejoins every election with the new session. SIGTERM/SIGINT: stop signal to every child's
group at once, wait up to the grace period, SIGKILL, delete the candidates, close the session, exit 0.

What it does not do (and zk-supervise does): no lease, so a partitioned or frozen leader keeps its child
running until kazoo reports the session LOST (after reconnecting, i.e. after the server already let
another node lead); no guard; no health checks, metrics, reload.

One thread runs the elections (a queue of events fed by watch callbacks, child exits and signals); one
thread per running child waits for its exit.
"""

import ctypes
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import uuid

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NoNodeError

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def duration(text, default):
    """'500ms', '2s', '1m' -> seconds."""
    if text is None:
        return default
    for unit, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * scale
    raise ValueError(f"bad duration {text!r}")


def child_setup():
    # Runs in the child between fork and exec: die with the agent.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Worker:
    def __init__(self, spec, defaults):
        merged = dict(defaults)
        merged.update(spec)
        self.name = spec["name"]
        self.command = spec["command"]
        self.env = merged.get("env", {})
        self.working_dir = merged.get("working_dir")
        self.stop_signal = getattr(signal, "SIG" + merged.get("stop_signal", "TERM"))
        self.grace = duration(merged.get("grace_period"), 5.0)
        self.restart_delay = duration(merged.get("restart_delay"), 1.0)
        self.me = None  # full path of our candidate
        self.seq = None
        self.proc = None
        self.token = None
        self.generation = 0  # bumped at every start; stale exit events are ignored


class Agent:
    def __init__(self, path):
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
        zk = cfg["zookeeper"]
        self.node = cfg.get("node", {}).get("id", socket.gethostname())
        self.root = zk.get("root", "/workers").rstrip("/")
        self.timeout = duration(zk.get("session_timeout"), 15.0)
        self.workers = {w["name"]: Worker(w, cfg.get("defaults", {})) for w in cfg["worker"]}
        self.data = json.dumps(
            {"node": self.node, "host": socket.gethostname(), "pid": os.getpid(), "version": "kazoo-agent"}
        ).encode()
        self.events = queue.Queue()
        self.stopping = False
        self.zk = KazooClient(hosts=zk["connect"], timeout=self.timeout)
        self.zk.add_listener(self.on_state)

    # ----- callbacks (kazoo's threads, signal handler): only enqueue
    def on_state(self, state):
        if state == KazooState.LOST:
            self.events.put(("lost", None))
        elif state == KazooState.CONNECTED and getattr(self, "_lost", False):
            self.events.put(("rejoin", None))

    def watcher(self, name):
        return lambda event: self.events.put(("check", name))

    # ----- the event loop
    def run(self):
        self.zk.start(timeout=30)
        for name in self.workers:
            self.join(self.workers[name])
            self.check(self.workers[name])
        logging.info("joined %d elections", len(self.workers))
        while True:
            kind, arg = self.events.get()
            try:
                if kind == "stop":
                    break
                if kind == "check":
                    self.check(self.workers[arg])
                elif kind == "exited":
                    name, generation = arg
                    w = self.workers[name]
                    if w.generation == generation and w.proc is not None:
                        logging.info("%s exited: %s", name, w.proc.returncode)
                        w.proc = None
                        threading.Timer(w.restart_delay, self.events.put, args=(("check", name),)).start()
                elif kind == "lost":
                    self._lost = True
                    logging.warning("session lost: killing every child")
                    for w in self.workers.values():
                        self.kill(w)
                        w.me = None
                elif kind == "rejoin":
                    self._lost = False
                    for w in self.workers.values():
                        self.join(w)
                        self.check(w)
            except Exception as e:  # a connection loss mid-step: look again shortly
                logging.warning("%s %s: %r", kind, arg, e)
                if kind == "check":
                    threading.Timer(0.5, self.events.put, args=((kind, arg),)).start()
        self.shutdown()

    def join(self, w):
        path = f"{self.root}/{w.name}"
        self.zk.ensure_path(path)
        w.me = self.zk.create(f"{path}/_c_{uuid.uuid4().hex}-n_", self.data, ephemeral=True, sequence=True)
        w.seq = int(w.me[-10:])

    def check(self, w):
        if self.stopping or w.me is None:
            return
        path = f"{self.root}/{w.name}"
        queue_ = sorted(self.zk.get_children(path), key=lambda n: int(n[-10:]))
        mine = w.me.rsplit("/", 1)[1]
        if mine not in queue_:
            logging.warning("%s: candidate gone, rejoining", w.name)
            self.kill(w)
            self.join(w)
            return self.check(w)
        i = queue_.index(mine)
        if i > 0:
            if self.zk.exists(f"{path}/{queue_[i - 1]}", watch=self.watcher(w.name)) is None:
                self.events.put(("check", w.name))
            return
        if w.proc is not None:
            return  # leading and running
        stat = self.zk.exists(w.me, watch=self.watcher(w.name))
        if stat is None:
            return self.events.put(("check", w.name))
        self.start(w, stat.czxid)

    def start(self, w, token):
        env = dict(os.environ)
        env.update(w.env)
        env.update(
            ZK_SUPERVISE_WORKER=w.name,
            ZK_SUPERVISE_NODE=self.node,
            ZK_SUPERVISE_ZNODE=w.me,
            ZK_SUPERVISE_FENCING_TOKEN=str(token),
        )
        w.generation += 1
        w.proc = subprocess.Popen(
            w.command,
            env=env,
            cwd=w.working_dir,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=child_setup,
        )
        logging.info("%s started pid %d token %d", w.name, w.proc.pid, token)
        proc, generation = w.proc, w.generation

        def wait():
            proc.wait()
            self.events.put(("exited", (w.name, generation)))

        threading.Thread(target=wait, daemon=True).start()

    def kill(self, w):
        if w.proc is not None:
            try:
                os.killpg(w.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            w.proc.wait()
            w.proc = None

    def shutdown(self):
        self.stopping = True
        running = [w for w in self.workers.values() if w.proc is not None]
        logging.info("shutting down: stopping %d children", len(running))
        for w in running:
            try:
                os.killpg(w.proc.pid, w.stop_signal)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + max((w.grace for w in running), default=0.0)
        for w in running:
            try:
                w.proc.wait(timeout=max(0.0, min(w.grace, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                os.killpg(w.proc.pid, signal.SIGKILL)
                w.proc.wait()
        for w in self.workers.values():
            if w.me is not None:
                try:
                    self.zk.delete(w.me)
                except NoNodeError:
                    pass
        self.zk.stop()
        self.zk.close()
        logging.info("shut down cleanly")


def main():
    if len(sys.argv) != 2:
        print("usage: kazoo_agent.py <workers.toml>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    agent = Agent(sys.argv[1])
    # The handler runs on the main thread, which may be inside the queue: hand the put to another thread.
    def stop(*_):
        threading.Thread(target=agent.events.put, args=(("stop", None),)).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
