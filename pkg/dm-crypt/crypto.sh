#!/bin/busybox sh
# crypto [-l|--luks] [-k|--key-file NAME] [--force] DM_NAME DEVICE; see build.yml.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "dm-crypt: $*" >&2; }
fail() { say "$*"; exit 1; }

luks= key=key force= name= device=
while [ $# -gt 0 ]; do
	case "$1" in
	-l | --luks) luks=yes; shift ;;
	-k | --key-file) [ $# -ge 2 ] || fail "$1 needs a value"; key=$2; shift 2 ;;
	--key-file=*) key=${1#*=}; shift ;;
	--force) force=yes; shift ;;
	-h | --help) sed -n '2p' "$0" >&2; exit 0 ;;
	-*) fail "unknown option $1 (--luks, --key-file NAME, --force)" ;;
	*)
		if [ -z "$name" ]; then name=$1; elif [ -z "$device" ]; then device=$1; else
			fail "one DM_NAME and one DEVICE, not $1 too"
		fi
		shift
		;;
	esac
done
[ -n "$name" ] && [ -n "$device" ] || fail "usage: crypto [--luks] [--key-file NAME] DM_NAME DEVICE"
case "$name" in */* | . | ..) fail "$name: a device-mapper name has no '/'" ;; esac
case "$key" in /*) ;; *) key=/etc/dm-crypt/$key ;; esac
[ -s "$key" ] || fail "$key: no key file (give one with the spec's files, or --key-file)"
[ -b "$device" ] || fail "$device is not a block device"
mapped=/dev/mapper/$name
cipher="--cipher aes-xts-plain64 --key-size 512"

for module in dm_crypt xts ecb; do
	modprobe "$module" 2>/dev/null || [ -d "/sys/module/$module" ] ||
		fail "kernel module $module is missing"
done
mkdir -p /run/cryptsetup

# What blkid finds on $1 (a file system, a partition table, a LUKS header), or nothing.
found() {
	blkid -p -o export "$1" 2>/dev/null | grep -E '^(PT)?TYPE=' | head -n 1 | cut -d = -f 2
}

# Whether the first MiB of $1 is all zeros (a new disk, or one wiped for this).
blank() { [ "$(head -c 1048576 "$1" | tr -d '\0' | wc -c)" -eq 0 ]; }

refuse() {
	[ -n "$force" ] && return 0
	fail "$device holds $1: not encrypted over (--force to do it, destroying what is there)"
}

if [ -n "$luks" ]; then
	if ! cryptsetup isLuks "$device"; then
		what=$(found "$device")
		if [ -n "$what" ]; then refuse "$what"; elif ! blank "$device"; then refuse data; fi
		say "$device: LUKS2 header, made with $key"
		# shellcheck disable=SC2086
		cryptsetup luksFormat --batch-mode --type luks2 $cipher --pbkdf pbkdf2 \
			--iter-time 100 --key-file "$key" "$device" || fail "$device: luksFormat failed"
	fi
	cryptsetup open --type luks --key-file "$key" "$device" "$name" ||
		fail "$device: the key $key does not open it"
else
	what=$(found "$device")
	[ -z "$what" ] || refuse "$what (plain dm-crypt leaves no signature)"
	# Plain dm-crypt takes the key's bytes as they are, as many as the cipher's key has:
	# SHA-512 of the key file gives exactly those 64, whatever the file's length.
	material=$(mktemp)
	hex=$(sha512sum "$key" | cut -d ' ' -f 1)
	printf "$(echo "$hex" | sed 's/../\\x&/g')" >"$material"
	# shellcheck disable=SC2086
	cryptsetup open --type plain $cipher --key-file "$material" "$device" "$name" ||
		{ rm -f "$material"; fail "$device: cannot map it"; }
	rm -f "$material"
fi

filesystem=$(found "$mapped")
if [ -z "$filesystem" ]; then
	# Through a key that is not the one it was made with, a plain mapping is noise: a
	# device that was not blank is not formatted over.
	if [ -z "$luks" ] && ! blank "$device" && [ -z "$force" ]; then
		cryptsetup close "$name"
		fail "$device: no file system through this key (another key's data?): not formatted (--force)"
	fi
	mkfs.ext4 -q "$mapped"
	filesystem=ext4
	say "$mapped: ext4 made"
fi
say "$device on $mapped ($filesystem${luks:+, LUKS})"
