# zk-supervise %postun ($1 = 0 on erase, 1 or more on upgrade): forget the removed or changed unit file.
# Deliberately no restart on upgrade (see %post). The zk-supervise user is kept.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
