#!/bin/busybox sh
# dhcpcd waits for a link's operational state, which the kernel raises about a second
# after a driver's probe (its link watch runs at most once a second), while the carrier
# itself is there at once: bring the links up and wait (at most 3 s) for a carrier.
# Shell builtins only, but for links still down: each program is a fork and an exec,
# slow on an emulated CPU, and osbuilder's init has raised every link already.
links=""
for link in /sys/class/net/*; do
    [ "${link##*/}" = lo ] && continue
    links="$links $link"
    flags=0
    read -r flags 2>/dev/null <"$link/flags"
    [ $((flags & 1)) = 1 ] || /bin/busybox ip link set "${link##*/}" up 2>/dev/null  # IFF_UP
done
tries=30
while [ "$tries" -gt 0 ]; do
    for link in $links; do
        carrier=""
        read -r carrier 2>/dev/null <"$link/carrier"
        [ "$carrier" = 1 ] && break 2
    done
    /bin/busybox usleep 100000
    tries=$((tries - 1))
done
# Run once (-1, as in onboot), dhcpcd need not watch the link (-K): the carrier is
# there. Run as a service, it keeps watching, to configure the link again when it
# comes back after a loss.
for argument in "$@"; do
    case "$argument" in
        -1|--oneshot) exec /usr/sbin/dhcpcd --nolink "$@" ;;
    esac
done
exec /usr/sbin/dhcpcd "$@"
