#!/bin/busybox sh
# metadata [cdrom]: user data from a cidata volume into /run/config; see build.yml.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
config=/run/config

say() { echo "metadata: $*" >&2; }
fail() { say "$*"; exit 1; }

for provider in "$@"; do
	[ "$provider" = cdrom ] || fail "provider $provider: this package reads cdrom (a cidata volume) only"
done

device=$(blkid -c /dev/null -t LABEL=cidata -o device 2>/dev/null | head -n 1)
if [ -z "$device" ]; then
	say "no user data: no cidata volume"
	exit 0
fi
mnt=$(mktemp -d)
trap 'umount "$mnt" 2>/dev/null || true; rmdir "$mnt"' EXIT
mount -t iso9660 -o ro "$device" "$mnt" || fail "$device: cannot mount it"
source=
for name in user-data config; do
	if [ -f "$mnt/$name" ]; then
		source=$mnt/$name
		break
	fi
done
[ -n "$source" ] || fail "$device holds neither user-data nor config"

mkdir -p "$config"
cp "$source" "$config/userdata"
echo cdrom >"$config/provider"
say "user data from $device: $(wc -c <"$source") bytes in $config/userdata"

if jq -e 'type == "object"' "$source" >/dev/null 2>&1; then
	entries=$(mktemp)
	jq -r -f /usr/share/metadata/tree.jq "$source" >"$entries" ||
		fail "the user data is JSON but not a file tree (see above)"
	tab=$(printf '\t')
	while IFS="$tab" read -r kind perm path content; do
		if [ "$kind" = d ]; then
			mkdir -p "$config/$path"
		else
			printf '%s' "$content" | base64 -d >"$config/$path"
		fi
		chmod "$perm" "$config/$path"
		say "$config/$path"
	done <"$entries"
	rm -f "$entries"
	if [ -f "$config/hostname" ]; then
		hostname "$(cat "$config/hostname")"
		say "hostname: $(hostname)"
	fi
fi
