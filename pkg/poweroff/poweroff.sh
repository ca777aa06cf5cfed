#!/bin/busybox sh
# /poweroff.sh [SECONDS [poweroff|reboot|halt]]; see build.yml.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
seconds=${1:-30}
action=${2:-poweroff}
case "$seconds" in
'' | *[!0-9]*) echo "poweroff: $seconds: give whole seconds" >&2; exit 1 ;;
esac
# busybox init's signals, which osbuilder's init keeps.
case "$action" in
poweroff) signal=USR2 ;;
halt) signal=USR1 ;;
reboot) signal=TERM ;;
*) echo "poweroff: $action: poweroff, reboot or halt" >&2; exit 1 ;;
esac
echo "poweroff: $action in $seconds s" >&2
sleep "$seconds"
exec kill -s "$signal" 1
