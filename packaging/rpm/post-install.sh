# zk-supervise %post ($1 = 1 on first install, 2 or more on upgrade).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    # Enable (per the shipped preset, which an administrator's preset can override), but do not start:
    # the shipped config runs no worker. Edit /etc/zk-supervise/workers.toml, then start it.
    systemctl --no-reload preset zk-supervise.service >/dev/null 2>&1 || :
elif [ -d /run/systemd/system ] && systemctl --quiet is-active zk-supervise.service; then
    # No restart on upgrade: restarting hands every worker this node runs to another node, which is the
    # operator's call, one node at a time. The running daemon keeps working on the previous binary.
    echo "zk-supervise: the running daemon still uses the previous version; to switch, restart it when this" \
        "node may hand its workers over (one node at a time): systemctl restart zk-supervise" >&2
fi
exit 0
