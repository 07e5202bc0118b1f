# zk-supervise %pre: create the zk-supervise system user and group (the same as
# /usr/lib/sysusers.d/zk-supervise.conf in this package). Never removed: files may still belong to them.
getent group zk-supervise >/dev/null || groupadd -r zk-supervise
getent passwd zk-supervise >/dev/null || \
    useradd -r -g zk-supervise -d / -s /sbin/nologin -c "zk-supervise daemon" zk-supervise
exit 0
