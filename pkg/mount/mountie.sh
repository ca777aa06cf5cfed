#!/bin/busybox sh
# mountie [-label LABEL | -uuid UUID | -device DEVICE | DEVICE] MOUNTPOINT; see build.yml.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "mountie: $*" >&2; }
fail() { say "$*"; exit 1; }

selector= device= mountpoint=
while [ $# -gt 0 ]; do
	case "$1" in
	-label | --label) [ $# -ge 2 ] || fail "$1 needs a value"; selector=LABEL=$2; shift 2 ;;
	-uuid | --uuid) [ $# -ge 2 ] || fail "$1 needs a value"; selector=UUID=$2; shift 2 ;;
	-device | --device) [ $# -ge 2 ] || fail "$1 needs a value"; device=$2; shift 2 ;;
	-*) fail "unknown option $1 (-label, -uuid, -device)" ;;
	*)
		if [ $# -ge 2 ] && [ -z "$device" ]; then device=$1; else mountpoint=$1; fi
		shift
		;;
	esac
done
[ -n "$mountpoint" ] || fail "give the mount point, e.g. mountie -label DATA /var/lib/data"
case "$mountpoint" in
/var/*) ;;
*) fail "$mountpoint: mount points are under /var (the only place bound back to the system)" ;;
esac

filesystem() { blkid -c /dev/null -o value -s TYPE "$1" 2>/dev/null || true; }

# The first partition with a file system on a writable disk, in name order.
first_partition() {
	for sys in /sys/block/*/*; do
		[ -f "$sys/partition" ] || continue
		[ "$(cat "${sys%/*}/ro")" = 0 ] || continue
		candidate=/dev/${sys##*/}
		if [ -n "$(filesystem "$candidate")" ]; then
			echo "$candidate"
			return
		fi
	done
}

if [ -n "$selector" ]; then
	device=$(blkid -c /dev/null -t "$selector" -o device 2>/dev/null | head -n 1)
	[ -n "$device" ] || fail "no file system with $selector"
elif [ -z "$device" ]; then
	device=$(first_partition)
	[ -n "$device" ] || fail "no partition with a file system to mount"
fi
[ -b "$device" ] || fail "$device is not a block device"
type=$(filesystem "$device")
[ -n "$type" ] || fail "$device holds no file system (format it first)"
mkdir -p "$mountpoint"
mount -t "$type" "$device" "$mountpoint"
say "$device ($type) on $mountpoint"
