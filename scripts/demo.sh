#!/usr/bin/env bash
# A local demo: starts a throwaway ZooKeeper server and runs `zk-supervise run` on workers.example.toml in the
# foreground. Press Ctrl-C to stop: the supervisor stops its workers, then the server is stopped and its files
# removed.
#
# To watch a failover, run the second node it prints in another terminal, then Ctrl-C one of them.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-zookeeper.sh

classpath=${ZOOKEEPER_CLASSPATH:-/etc/zookeeper/conf:/usr/share/java/zookeeper.jar}
if [[ -z ${ZOOKEEPER_CLASSPATH:-} && -f /usr/share/java/slf4j-simple.jar ]]; then
    classpath+=:/usr/share/java/slf4j-simple.jar # the server's log, which Debian's package leaves unbound
fi

say() { echo "demo: $*" >&2; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
four_letter() { (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf '%s' "$1" >&3 && timeout 2 cat <&3) 2>/dev/null; }

# 2181, the port the example names, unless something listens there already.
port=2181
while port_in_use "$port"; do
    port=$((20000 + RANDOM % 10000))
done

tmp=$(mktemp -d -t zk-supervise-demo.XXXXXX)
zk_pid=
cleanup() {
    if [[ -n $zk_pid ]]; then
        kill "$zk_pid" 2>/dev/null || true
        wait "$zk_pid" 2>/dev/null || true
        say "ZooKeeper stopped"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir "$tmp/data"
cat >"$tmp/zoo.cfg" <<CFG
tickTime=500
minSessionTimeout=1000
maxSessionTimeout=20000
dataDir=$tmp/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,cons
CFG

say "starting ZooKeeper on 127.0.0.1:$port (log: $tmp/zookeeper.log)"
# In a session of its own so that Ctrl-C reaches the supervisor only; the trap stops the server afterwards.
setsid java -Xmx128m -cp "$classpath" org.apache.zookeeper.server.quorum.QuorumPeerMain "$tmp/zoo.cfg" \
    </dev/null >"$tmp/zookeeper.log" 2>&1 &
zk_pid=$!

for _ in $(seq 300); do
    if [[ $(four_letter ruok) == imok ]] && four_letter srvr | grep -q '^Mode: standalone'; then
        break
    fi
    kill -0 "$zk_pid" 2>/dev/null || { tail -n 30 "$tmp/zookeeper.log" >&2; say "ZooKeeper exited"; exit 1; }
    sleep 0.1
done
[[ $(four_letter ruok) == imok ]] || { tail -n 30 "$tmp/zookeeper.log" >&2; say "ZooKeeper did not start in 30 s"; exit 1; }
say "ZooKeeper is up"

say "building zk-supervise"
cargo build --locked --bin zk-supervise
bin=${CARGO_TARGET_DIR:-target}/debug/zk-supervise

# Two copies of the example that point at this server, one per demo node.
for node in a b; do
    sed -e "s|^connect = \"[^\"]*\"|connect = \"127.0.0.1:$port\"|" \
        -e "s|^# id = \"[^\"]*\"|id = \"demo-$node\"|" \
        workers.example.toml >"$tmp/node-$node.toml"
done
"$bin" check "$tmp/node-a.toml"

cat >&2 <<MSG
demo: running node demo-a in the foreground; Ctrl-C stops it and the demo.
demo: in another terminal, a second node (Ctrl-C either one to watch the other take over):
        $bin run $tmp/node-b.toml
demo: and who runs what:
        $bin status $tmp/node-a.toml
MSG
# Not exec: the trap must stop ZooKeeper after the supervisor's clean shutdown.
"$bin" run "$tmp/node-a.toml"
