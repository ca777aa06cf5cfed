#!/bin/busybox sh
# format [-type ext4|xfs|btrfs] [-label LABEL] [-partition dos|gpt] [-force] [-verbose] [DEVICE]
# One Linux partition filling the disk, formatted; see build.yml.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
fstype=ext4 label= table=dos force= verbose= device=

say() { echo "format: $*" >&2; }
fail() { say "$*"; exit 1; }
debug() { [ -z "$verbose" ] || say "$*"; }

while [ $# -gt 0 ]; do
	case "$1" in
	-type | --type) [ $# -ge 2 ] || fail "$1 needs a value"; fstype=$2; shift 2 ;;
	-label | --label) [ $# -ge 2 ] || fail "$1 needs a value"; label=$2; shift 2 ;;
	-partition | --partition) [ $# -ge 2 ] || fail "$1 needs a value"; table=$2; shift 2 ;;
	-force | --force) force=1; shift ;;
	-verbose | --verbose) verbose=1; shift ;;
	-*) fail "unknown option $1 (-type, -label, -partition, -force, -verbose)" ;;
	*) [ -z "$device" ] || fail "one device only, not $device and $1"; device=$1; shift ;;
	esac
done
case "$fstype" in
ext4) max_label=16 ;;
xfs) max_label=12 ;;
btrfs) max_label=255 ;;
*) fail "-type $fstype: ext4, xfs or btrfs" ;;
esac
case "$table" in dos | gpt) ;; *) fail "-partition $table: dos or gpt" ;; esac
[ "${#label}" -le "$max_label" ] || fail "-label $label: $fstype labels have at most $max_label characters"

partitioned() { sfdisk --dump "$1" >/dev/null 2>&1; }
# A file system on the whole disk, with no partition table: data too.
whole_disk_filesystem() { blkid -c /dev/null -p -o value -s TYPE "$1" 2>/dev/null || true; }

# Whole disks the guest may write, in name order; CD-ROMs, loop and RAM disks and
# read-only disks (a boot medium) are never candidates.
disks() {
	for sys in /sys/block/*; do
		name=${sys##*/}
		case "$name" in loop* | ram* | zram* | sr* | dm-* | md*) continue ;; esac
		[ "$(cat "$sys/ro")" = 0 ] && [ "$(cat "$sys/size")" -gt 0 ] || continue
		echo "/dev/$name"
	done
}

if [ -z "$device" ]; then
	for candidate in $(disks); do
		found=$(whole_disk_filesystem "$candidate")
		if partitioned "$candidate"; then
			debug "$candidate has a partition table: skipped"
		elif [ -n "$found" ]; then
			say "$candidate holds a file system ($found): skipped"
		else
			device=$candidate
			break
		fi
	done
	if [ -z "$device" ]; then
		say "no disk without a partition table or a file system: nothing to format"
		exit 0
	fi
fi
[ -b "$device" ] || fail "$device is not a block device"
if [ -z "$force" ]; then
	if partitioned "$device"; then
		say "$device is partitioned already: left as it is (-force re-creates it)"
		exit 0
	fi
	found=$(whole_disk_filesystem "$device")
	if [ -n "$found" ]; then
		say "$device holds a file system ($found): left as it is (-force re-creates it)"
		exit 0
	fi
fi

case "$device" in
*[0-9]) partition=${device}p1 ;; # nvme0n1p1, mmcblk0p1
*) partition=${device}1 ;;
esac
debug "partitioning $device ($table)"
printf 'type=L\n' | sfdisk --quiet --wipe always --wipe-partitions always --label "$table" "$device"
tries=0
while [ ! -b "$partition" ]; do # devtmpfs adds the node once the kernel re-reads the table
	tries=$((tries + 1))
	[ "$tries" -le 100 ] || fail "$partition did not appear after partitioning $device"
	sleep 0.1
done
debug "making an $fstype file system on $partition"
case "$fstype" in
ext4) mkfs.ext4 -q -F ${label:+-L "$label"} "$partition" ;;
xfs) mkfs.xfs -q -f ${label:+-L "$label"} "$partition" ;;
btrfs) mkfs.btrfs -q -f ${label:+-L "$label"} "$partition" >/dev/null ;;
esac
say "$partition: $fstype${label:+, label $label}"
