#!/bin/busybox sh
# /swap.sh --path /var/PATH --size SIZE [--condition COND]... [--encrypt] [--debug];
# see build.yml.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "swap: $*" >&2; }
fail() { say "$*"; exit 1; }

# bytes SIZE: SIZE (bytes, or K, M, G) in bytes; fails on anything else.
bytes() {
	case "$1" in
	*[!0-9KMG]* | '' | [KMG]* | *[KMG]?*) fail "$1: a size is bytes, or a number with K, M or G" ;;
	*G) echo $((${1%G} * 1024 * 1024 * 1024)) ;;
	*M) echo $((${1%M} * 1024 * 1024)) ;;
	*K) echo $((${1%K} * 1024)) ;;
	*) echo "$1" ;;
	esac
}

# unmet CONDITION REQUIRED: the end when a condition does not hold.
unmet() {
	if [ "$2" = true ]; then
		fail "$1 (a required condition): no swap file"
	fi
	say "$1: no swap file"
	exit 0
}

path= size= encrypt= conditions=
while [ $# -gt 0 ]; do
	case "$1" in
	--path | --file) [ $# -ge 2 ] || fail "$1 needs a value"; [ -z "$path" ] || fail "give one --path"; path=$2; shift 2 ;;
	--size) [ $# -ge 2 ] || fail "$1 needs a value"; size=$2; shift 2 ;;
	--condition) [ $# -ge 2 ] || fail "$1 needs a value"; conditions="$conditions $2"; shift 2 ;;
	--encrypt) encrypt=yes; shift ;;
	--debug) set -x; shift ;;
	*) fail "unknown option $1 (--path, --size, --condition, --encrypt, --debug)" ;;
	esac
done
[ -n "$path" ] || fail "give the swap file's path: --path /var/..."
[ -n "$size" ] || fail "give the swap file's size: --size 1G"
case "$path" in
/var/*[!/]*) ;;
*) fail "$path: the swap file goes under /var (the system's writable tree)" ;;
esac
case "/$path/" in */../*) fail "$path: no '..' in the path" ;; esac
wanted=$(bytes "$size")
[ "$wanted" -ge 40960 ] || fail "--size $size: a swap file needs 40K or more"

for condition in $conditions; do
	IFS=: read -r kind first second third <<-END
		$condition
	END
	case "$kind" in
	part)
		[ -n "$first" ] || fail "$condition: part:PATH[:REQUIRED]"
		first=${first%/}
		if ! awk -v want="$first" '$2 == want { found = 1 } END { exit !found }' /proc/mounts; then
			unmet "$first is not a mount point" "$second"
		fi
		;;
	partsize | size)
		[ -n "$first" ] && [ -n "$second" ] || fail "$condition: partsize:PATH:SIZE[:REQUIRED]"
		minimum=$(bytes "$second")
		[ -e "$first" ] || unmet "$first does not exist" "$third"
		have=$(($(df -k "$first" | awk 'NR == 2 { print $2 }') * 1024))
		[ "$have" -ge "$minimum" ] || unmet "the file system of $first has $((have / 1048576))M, less than $second" "$third"
		;;
	*) fail "$condition: conditions are part:PATH[:REQUIRED] or partsize:PATH:SIZE[:REQUIRED]" ;;
	esac
done

directory=${path%/*}
mkdir -p "$directory"
# The file system's magic number (busybox names too few of them).
case "$(stat -f -c %t "$directory")" in
1021994) filesystem=tmpfs ;;
858458f6) filesystem=ramfs ;;
794c7630) filesystem=overlay ;;
9123683e) filesystem=btrfs ;;
*) filesystem= ;;
esac
case "$filesystem" in
tmpfs | ramfs | overlay) fail "$path is on $filesystem, which cannot hold swap: mount a disk there (pkg/format, pkg/mount)" ;;
esac

if [ ! -f "$path" ] || [ "$(stat -c %s "$path")" != "$wanted" ]; then
	rm -f "$path"
	: >"$path"
	chmod 0600 "$path"
	# btrfs: a swap file must not be copy-on-write, set while the file is still empty.
	[ "$filesystem" != btrfs ] || chattr +C "$path"
	if ! error=$(fallocate -l "$wanted" "$path" 2>&1); then
		rm -f "$path"
		fail "$path: cannot allocate $size (${error##*: })"
	fi
	say "$path: $size allocated"
fi

device=$path
if [ -n "$encrypt" ]; then
	for module in dm_crypt xts ecb loop; do
		modprobe "$module" 2>/dev/null || grep -q "^${module} " /proc/modules ||
			[ -d "/sys/module/$module" ] || fail "kernel module $module is missing (--encrypt)"
	done
	name=swap-$(echo "${path#/var/}" | tr -c 'A-Za-z0-9_\n' -)
	cryptsetup open --type plain --key-file /dev/urandom --key-size 512 \
		--cipher aes-xts-plain64 "$path" "$name" || fail "$path: cryptsetup could not map it"
	device=/dev/mapper/$name
fi
mkswap "$device" >/dev/null
swapon "$device" || fail "$device: swapon failed"
say "$path: $size of swap${encrypt:+ (encrypted, $device)}"
