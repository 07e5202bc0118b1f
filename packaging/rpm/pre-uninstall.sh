# zk-supervise %preun ($1 = 0 on erase, 1 or more on upgrade). On erase: stop the daemon (a clean shutdown
# that hands every worker to another node) and disable it. On upgrade: nothing, the daemon keeps running.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now zk-supervise.service >/dev/null 2>&1 || :
fi
exit 0
