#!/bin/busybox sh
# The hook scripts run mkdir, cat, rm, chmod ...: busybox provides them.
[ -e /bin/mkdir ] || /bin/busybox --install -s 2>/dev/null
# With -1 dhcpcd gives up at once on a link without carrier, and a virtio NIC just
# brought up has none for a moment: bring the links up and wait (at most 3 s) for one.
links=""
for link in /sys/class/net/*; do
    [ "${link##*/}" = lo ] && continue
    links="$links $link"
    /bin/busybox ip link set "${link##*/}" up 2>/dev/null
done
for _ in $(/bin/busybox seq 30); do
    for link in $links; do
        [ "$(/bin/busybox cat "$link/operstate" 2>/dev/null)" = up ] && break 2
    done
    /bin/busybox usleep 100000
done
exec /usr/sbin/dhcpcd "$@"
