#!/usr/bin/env bash
# Makes sure a ZooKeeper server can be started by the integration tests and scripts/demo.sh.
#
# They run `java -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar ...` (Debian's `zookeeper` package), or
# the classpath in $ZOOKEEPER_CLASSPATH if set. If neither is there, this installs the package with apt-get
# (through sudo when not root). Safe to run repeatedly: it does nothing when ZooKeeper is present.
set -euo pipefail

say() { echo "install-zookeeper: $*" >&2; }
fail() {
    say "error: $*"
    exit 1
}

if [[ -n "${ZOOKEEPER_CLASSPATH:-}" ]]; then
    say "using ZOOKEEPER_CLASSPATH=$ZOOKEEPER_CLASSPATH"
    command -v java >/dev/null || fail "java is not on PATH; install a Java runtime (e.g. apt-get install default-jre-headless)"
    exit 0
fi

jar=/usr/share/java/zookeeper.jar
if [[ -f $jar ]] && command -v java >/dev/null; then
    say "ZooKeeper is installed ($jar)"
    exit 0
fi

command -v apt-get >/dev/null ||
    fail "$jar is missing and there is no apt-get here. Install ZooKeeper 3.8 and a Java runtime, then set ZOOKEEPER_CLASSPATH to the server's classpath (its jar and lib/*)."

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || fail "$jar is missing; run as root: apt-get update && apt-get install -y zookeeper"
    sudo=(sudo)
fi

say "$jar is missing; installing Debian's zookeeper package"
run() {
    say "+ $*"
    "$@"
}
run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update ||
    fail "apt-get update failed"
run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends zookeeper ||
    fail "apt-get install zookeeper failed"

[[ -f $jar ]] || fail "the zookeeper package is installed but $jar is still missing"
command -v java >/dev/null || fail "the zookeeper package is installed but java is not on PATH"
say "installed ZooKeeper ($jar)"
